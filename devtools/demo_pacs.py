"""`make demo-pacs`: from a PACS to the outbox, on this machine.

1. starts a local Orthanc (Debian's orthanc + orthanc-dicomweb) and loads the sample
   studies (`sendit sample`) into it through its REST API;
2. runs the retrieve DAG in-process (dag.test) with their accession numbers and one that
   the PACS does not hold, by the method given (c-get, c-move or dicomweb);
3. runs the input folder's DAG (`sendit run`) on what arrived: de-identified, packaged,
   delivered to the local outbox;
4. prints each step's counts and stops Orthanc.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from devtools.orthanc_server import free_port, start_orthanc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="demo folder (recreated)")
    parser.add_argument("--method", default="c-get", choices=["c-get", "c-move", "dicomweb"])
    args = parser.parse_args(argv)
    root = args.root.resolve()
    shutil.rmtree(root, ignore_errors=True)
    os.environ["SENDIT_HOME"] = str(root / "home")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

    from sendit_ops.airflow.cli import ensure_airflow_home, ensure_secret_key
    from sendit_ops.sample_data import make_demo_input

    expectations = make_demo_input(root / "samples")
    wanted = sorted(name for name, state in expectations.items() if state == "DONE")
    move_port = free_port()
    pacs = start_orthanc(root / "orthanc", {"sendit": ("SENDIT", "127.0.0.1", move_port)})
    try:
        files = [p for a in wanted for p in sorted((root / "samples" / a).rglob("*.dcm"))]
        print(
            f"1. PACS: Orthanc on DICOM port {pacs.dicom_port}, HTTP {pacs.http_port}; "
            f"loaded {pacs.upload(files)} images of {len(wanted)} studies"
        )
        incoming = root / "incoming"
        incoming.mkdir()
        settings = {"work_root": str(root / "work"), "outbox": str(root / "outbox")}
        os.environ["AIRFLOW_VAR_SENDIT_INPUT_FOLDERS"] = json.dumps(
            [{"path": str(incoming), "name": "from_pacs"}]
        )
        os.environ["AIRFLOW_VAR_SENDIT_SETTINGS"] = json.dumps(settings)
        os.environ["AIRFLOW_VAR_SENDIT_PACS_SOURCES"] = json.dumps(
            [
                {
                    "name": "demo",
                    "conn_id": "pacs_demo",
                    "input_folder": "from_pacs",
                    "trigger_folder_dag": False,
                }
            ]
        )
        if args.method == "dicomweb":
            conn = {"conn_type": "dicomweb", "host": pacs.dicomweb_url}
        else:
            conn = {
                "conn_type": "dicom_pacs",
                "host": "127.0.0.1",
                "port": pacs.dicom_port,
                "schema": pacs.aet,
                "login": "SENDIT",
                "extra": {"method": args.method, "move_port": move_port},
            }
        os.environ["AIRFLOW_CONN_PACS_DEMO"] = json.dumps(conn)
        home = Path(os.environ["SENDIT_HOME"])
        ensure_secret_key(home)
        ensure_airflow_home(home)

        from sendit_ops.airflow.retrieve_dag import build_retrieve_dags
        from sendit_ops.pacs.request_ledger import RequestLedger

        dag = build_retrieve_dags()["sendit_retrieve_demo"]
        print(
            f"2. retrieve DAG {dag.dag_id} ({args.method}): {len(wanted)} accession numbers "
            "+ 1 the PACS does not hold ..."
        )
        run = dag.test(run_conf={"accession_numbers": [*wanted, "ACC-NOT-IN-PACS"]})
        ledger = RequestLedger(settings["work_root"], "demo")
        rows = ledger.studies()
        print(
            f"   run {str(run.state).rsplit('.', 1)[-1]}; requested items "
            f"{ledger.item_counts()}; studies {ledger.study_counts()}; "
            f"{sum(r.received for r in rows)} images, "
            f"{sum(r.bytes for r in rows) / 1e6:.1f} MB"
        )
        print(f"   study folders in {incoming}: {len(list(incoming.iterdir()))}")
        print("3. the input folder's DAG: de-identify, package, deliver ...")
        done = subprocess.run(
            [
                str(Path(sys.executable).with_name("sendit")),
                "run",
                "--input",
                str(incoming),
                "--outbox",
                settings["outbox"],
                "--work-root",
                settings["work_root"],
                "--name",
                "from_pacs",
            ],
            env=os.environ,
        )
        archives = sorted((root / "outbox").rglob("*.tar.gz"))
        table = root / "outbox" / "bigquery" / "DEMO" / "dicom.jsonl"
        lines = len(table.read_text().splitlines()) if table.exists() else 0
        print(f"4. outbox: {len(archives)} archives, {lines} rows ({table})")
        return done.returncode
    finally:
        pacs.stop()


if __name__ == "__main__":
    raise SystemExit(main())
