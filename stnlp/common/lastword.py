"""The user data's last word: end a run ``failed`` and release its lock, with the AWS CLI only.

The training user data runs this (embedded in it, with the system ``python3``) from its failure
trap, when something stops the instance before or outside the bootstrap: a download, pip, the
venv, a bootstrap that died without recording its end. It needs nothing but the standard library
and the ``aws`` command, since the failure may be that nothing else got installed.

It writes the run record as :mod:`stnlp.runtime.runs` does (a conditional write on the etag,
reread and reapplied on a conflict): ``failed`` with the message, then ``cleanup`` with the
result, unless the run already ended; then it deletes the job's lock if this run holds it.
"""

import json
import subprocess
import sys
import tempfile
import time

ENDED = ("failed", "killed")
ATTEMPTS = 5


def _aws(*args):
    done = subprocess.run(["aws", "s3api", *args, "--output", "json"], capture_output=True,
                          text=True)
    return done.returncode, done.stdout, done.stderr


def _get(bucket, key):
    """``(record, etag)`` of a JSON object, or ``(None, None)`` when it does not exist."""
    with tempfile.NamedTemporaryFile() as body:
        code, out, err = _aws("get-object", "--bucket", bucket, "--key", key, body.name)
        if code != 0:
            if "NoSuchKey" in err or "Not Found" in err or "404" in err:
                return None, None
            raise RuntimeError(f"get s3://{bucket}/{key}: {err.strip()}")
        with open(body.name, encoding="utf-8") as handle:
            return json.load(handle), json.loads(out)["ETag"]


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def end_record(record, message):
    """The record moved to ``failed`` (unless it failed or was killed already) and ``cleanup``."""
    stamp = _now()
    if record["state"] not in ENDED:
        record["history"].append({"state": "failed", "time": stamp, "error": message})
        record.update(state="failed", error=message)
    record["history"].append({"state": "cleanup", "time": stamp})
    record.update(state="cleanup", result=record["state"], updated=stamp)
    return record


def record_failure(bucket, stack, job, run_id, message):
    """End run ``run_id`` with ``message`` if it is still open; release ``job``'s lock."""
    key = f"{stack}/runs/{run_id}/state.json"
    for _ in range(ATTEMPTS):
        record, etag = _get(bucket, key)
        if record is None or record["state"] == "cleanup":
            break
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as body:
            json.dump(end_record(record, message), body, indent=1, sort_keys=True)
        code, _, err = _aws("put-object", "--bucket", bucket, "--key", key, "--body", body.name,
                            "--if-match", etag)
        if code == 0:
            break
        if "PreconditionFailed" not in err and "412" not in err:
            raise RuntimeError(f"put s3://{bucket}/{key}: {err.strip()}")
    lock_key = f"{stack}/locks/{job}.json"
    lock, _ = _get(bucket, lock_key)
    if lock is not None and lock.get("run_id") == run_id:
        _aws("delete-object", "--bucket", bucket, "--key", lock_key)


if __name__ == "__main__":
    record_failure(*sys.argv[1:6])
