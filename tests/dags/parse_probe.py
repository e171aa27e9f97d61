"""Parse DAG files the way the DAG processor does, and report any I/O done while parsing.

Run in a subprocess (an audit hook cannot be removed once added). Prints one JSON object: the DAG ids
found, import errors, and every file opened outside Python's own installation and the repo's source, every
socket connection, and every Airflow connection or Variable look-up made at parse time.

The one file read that is allowed besides source code: files inside the DAGs folder being parsed. A
declarative file shipped next to the DAG (dags/pipelines.yaml) is part of the DAG definition, deployed and
versioned with it, like the DAG file itself; reading it is no different from importing a module. Anything
outside that folder (the artifact store, a config service, a Variable) stays forbidden.
"""

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_PREFIXES = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/usr/lib", "/usr/share/zoneinfo", "/etc/localtime",
             "/dev/null", "/proc/self", "/sys/fs/cgroup"}
ALLOWED_PREFIXES = tuple(_PREFIXES | {os.path.realpath(p) for p in _PREFIXES})  # a venv may be a symlink
events = {"opened": [], "connected": [], "lookups": []}


def _is_source(path: str) -> bool:
    return path.startswith(str(REPO)) and path.endswith((".py", ".pyc")) or "__pycache__" in path


def _in_dags_folder(path: str) -> bool:
    return os.path.abspath(path).startswith(os.path.abspath(sys.argv[1]) + os.sep)


def audit(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes)):
        path = os.fsdecode(args[0])
        if not (path.startswith(ALLOWED_PREFIXES) or _is_source(path) or _in_dags_folder(path)
                or path.startswith(os.environ["AIRFLOW_HOME"])):
            events["opened"].append(path)
    elif event == "socket.connect":
        events["connected"].append(repr(args[1]))


def main() -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Connection, Variable

    def record(kind):
        def lookup(*args, **kwargs):
            events["lookups"].append(f"{kind}{args[-1:]}")
            raise RuntimeError(f"{kind} looked up at parse time")
        return lookup

    BaseHook.get_connection = classmethod(record("connection"))
    Connection.get = classmethod(record("connection"))
    Variable.get = staticmethod(record("variable"))
    sys.addaudithook(audit)
    bag = DagBag(dag_folder=sys.argv[1])
    print(json.dumps({"dag_ids": sorted(bag.dag_ids), "import_errors": bag.import_errors, **events}))


if __name__ == "__main__":
    main()
