"""The agent: the process next to the user's code, locally or on EC2 (stdlib only,
but for boto3 in its AWS side). `python -m runctl_jupyter.agent RUN_DIR` runs it.

supervise   one attempt, tick by tick: the runner, its output, heartbeats, the end
spawn       the runner's process: its environment, process group, death with the agent
output      printed lines and the runtime files -> log, metric, checkpoint events
early_stop  --early-stop: when a metric has stopped improving
stop        how a stop reaches the code: control.json, signals, --max-hours, SIGKILL
end         the attempt's status, record.ipynb, the exit event
runner      the child process that runs the cell, script or notebook
torchrun    a distributed run's ranks under torchrun
spot        IMDSv2 spot notices and the next attempt
watch       stalls, checkpoint gaps, lines an earlier attempt never sent
cost        dollars so far, `cost` events, --cost-limit
idle        a kept instance that stops itself when idle
s3          the S3 sync of events, logs and checkpoints (EC2)
service     the instance side around the agent: prepare the run folder, run, end
restore     the run folder made whole from S3 before an attempt
volume      the data volume (--data-size, --volume): formatted if blank, mounted, deleted if not kept
data        --data: an S3 prefix staged onto the data volume (or work/data), only what is new
checksums   --validate-data: staged files against the listing (size, MD5, multipart ETag)
prewarm     --prewarm: a restored volume read once before the code, `prewarm` events
boot        which attempt a spot fleet's replacement instance runs
cluster     a multi-node run's notices and end, on its nodes
"""
