"""Schedules: a run fired by time (`--cron`, `--rate`) or by new data (`--on-new-data`),
with no server of ours running: the clock is the user's crontab. (EventBridge Scheduler,
for AWS runs fired with this machine off, is not built yet: docs/continuous.md.)

files.py     the schedule's JSON file under $RUNCTL_HOME/schedules/, its lock and history
timing.py    cron and rate expressions: checked, the next fire times, AWS's spelling
crontab.py   the local backend: one entry a schedule in the user's crontab (python-crontab)
data.py      an S3 prefix as a manifest (key, size, ETag): new objects, settle time, age
fire.py      `schedule fire NAME`: the overlap guard, the data check, the run with its "why"
api.py       what Session calls: add, list, pause, resume, remove, run, fire
"""
