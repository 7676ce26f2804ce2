"""Schedules: a run fired by time (`--cron`, `--rate`) or by new data (`--on-new-data`),
with no server of ours running: the clock is the user's crontab, or for an AWS time
schedule EventBridge Scheduler, which fires with this machine off (aws_clock.py).

files.py     the schedule's JSON file under $RUNCTL_HOME/schedules/, its lock and history
timing.py    cron and rate expressions: checked, the next fire times, AWS's spelling
crontab.py   the local backend: one entry a schedule in the user's crontab (python-crontab)
data.py      an S3 prefix as a manifest (key, size, ETag): new objects, settle time, age
fire.py      `schedule fire NAME`: the overlap guard, the data check, the run with its "why"
api.py       what Session calls: add, list, pause, resume, remove, run, fire
aws_clock.py an AWS schedule: its role, bundle, launch template, Scheduler schedule; fired runs from S3
"""
