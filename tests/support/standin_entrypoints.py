"""The scripts baked into the backend stand-ins (``container_images.py``) in place of what the real
images carry: redis's entrypoint, mongo's entrypoint (on SecantusDB) and the ``mongosh`` that the
compose health check runs. A change here changes the stand-ins' recipe, so they are rebuilt.
"""

REDIS_ENTRYPOINT = """\
#!/bin/sh
# Stand-in for the redis image's entrypoint: like it, leave protected mode off when no config file
# is given, so that published ports answer.
set -e
if [ "${1#-}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ]; then shift; set -- redis-server --protected-mode no "$@"; fi
exec "$@"
"""

MONGO_ENTRYPOINT = '''\
#!/usr/bin/env python3
"""Stand-in for the mongo image's entrypoint, on SecantusDB: creates the root user from
MONGO_INITDB_ROOT_USERNAME/PASSWORD on the first start, then serves with --auth on 27017."""
import os, subprocess, sys, time
from pathlib import Path

DATA = Path("/data/db")
MARK = DATA / ".lucid-initialised"
# --standalone: as mongod without --replSet (the default advertises a one-node replica set under
# the address it binds, 0.0.0.0, which clients in other containers cannot reach).
SERVER = [sys.executable, "-m", "secantus", "--standalone", "--storage-path", str(DATA)]
SERVER += ["--log-level", "WARNING"]
user = os.environ.get("MONGO_INITDB_ROOT_USERNAME", "")
password = os.environ.get("MONGO_INITDB_ROOT_PASSWORD", "")
DATA.mkdir(parents=True, exist_ok=True)
if user and password and not MARK.exists():
    from pymongo import MongoClient
    setup = subprocess.Popen([*SERVER, "--host", "127.0.0.1", "--port", "27018"])
    client = MongoClient("mongodb://127.0.0.1:27018", serverSelectionTimeoutMS=60000)
    client.admin.command("ping")
    client.admin.command("createUser", user, pwd=password, roles=[{"role": "root", "db": "admin"}])
    client.close()
    setup.terminate()
    setup.wait(30)
    MARK.write_text("root user created\\n")
argv = [*SERVER, "--host", "0.0.0.0", "--port", "27017"] + (["--auth"] if MARK.exists() else [])
server = subprocess.Popen(argv)
from pymongo import MongoClient
deadline = time.monotonic() + 120
while time.monotonic() < deadline and server.poll() is None:
    try:
        MongoClient("mongodb://127.0.0.1:27017", serverSelectionTimeoutMS=1000).admin.command("ping")
        break
    except Exception:
        time.sleep(0.5)
print("SecantusDB stand-in for mongo: Waiting for connections on 27017", flush=True)
import signal
signal.signal(signal.SIGTERM, lambda *_: server.terminate())
sys.exit(server.wait())
'''

MONGOSH = '''\
#!/usr/bin/env python3
"""Stand-in for mongosh: runs the ping the compose health check asks for, nothing else."""
import os, sys
from pymongo import MongoClient
script = sys.argv[-1]
if "ping" not in script:
    sys.exit("mongosh stand-in: only --eval of a ping is supported")
user = os.environ.get("MONGO_INITDB_ROOT_USERNAME", "")
password = os.environ.get("MONGO_INITDB_ROOT_PASSWORD", "")
auth = f"{user}:{password}@" if user and password else ""
try:
    client = MongoClient(f"mongodb://{auth}127.0.0.1:27017", serverSelectionTimeoutMS=5000)
    ok = client.admin.command("ping")["ok"]
except Exception as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
sys.exit(0 if ok == 1 else 1)
'''
