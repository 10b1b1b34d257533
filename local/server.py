"""`make local`: the embedded AWS as a server on 127.0.0.1, so that the README's own commands
(`make build package deploy`, `make outputs`, `aws stepfunctions start-execution`) run unchanged
against it with AWS_ENDPOINT_URL set. Lambda functions run in this process; Ctrl-C stops it."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from moto.core.config import default_user_config
from moto.server import ThreadedMotoServer

from local.aws import CONFIG, FAKE_CREDENTIALS, install

HOST = "127.0.0.1"  # loopback only, never beyond this machine


def environment(port: int) -> dict[str, str]:
    """What a shell needs to talk to the server (the server process sets the same for itself)."""
    return {"AWS_ENDPOINT_URL": f"http://{HOST}:{port}", **FAKE_CREDENTIALS}


def serve(port: int) -> ThreadedMotoServer:
    install()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    default_user_config["stepfunctions"].update(CONFIG["stepfunctions"])
    os.environ.update(environment(port))
    os.environ["MOTO_PORT"] = str(port)  # moto's ASL engine calls back to this port
    server = ThreadedMotoServer(HOST, port, verbose=False)
    server.start()
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=5000)
    port = parser.parse_args().port
    server = serve(port)
    exports = " ".join(f"{k}={v}" for k, v in environment(port).items())
    print(f"The embedded AWS listens on http://{HOST}:{port}. In another shell:\n\n"
          f"  export {exports}\n\nCtrl-C stops it.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
