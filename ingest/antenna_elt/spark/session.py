"""The Spark session of ``antenna-elt ingest spark``.

Run as a plain command, it starts a local Spark (``ANTENNA_ELT_SPARK_MASTER``, default
``local[2]``) with Spark's Kafka source from jars that Maven resolves once into
``.stack/cache/spark-kafka-<pom digest>/`` (only four of them are passed: Maven also brings
older copies of jars pyspark already ships). Under ``spark-submit`` it takes the session
spark-submit configured, which brings the connector with
``--packages org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

from antenna_elt.errors import UserError
from antenna_elt.settings import PROJECT_ROOT

log = logging.getLogger("antenna_elt.spark")

FILES = Path(__file__).resolve().parent / "files"
POM = FILES / "kafka-connector-pom.xml"
KAFKA_PACKAGE = "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0"
"""What spark-submit's --packages takes on a cluster (the same artifact as the pom)."""
CONNECTOR_JARS = (
    "spark-sql-kafka-0-10_2.13-",
    "spark-token-provider-kafka-0-10_2.13-",
    "kafka-clients-",
    "commons-pool2-",
)


def _require(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise UserError(
            f"`{tool}` not found on PATH: install it with `apt-get install -y {package}`"
        )
    return found


def jars_dir() -> Path:
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    return PROJECT_ROOT / ".stack" / "cache" / f"spark-kafka-{digest}"


def connector_jars() -> list[Path]:
    """The Kafka source's jars, resolved by Maven the first time (about 15 s), then read
    from the cache. Resolved into a fresh folder renamed into place, so concurrent first
    runs cannot see half a folder."""
    lib = jars_dir()
    if not (lib / ".resolved").exists():
        mvn = _require("mvn", "maven")
        staging = lib.with_name(f"{lib.name}.{uuid.uuid4().hex[:8]}.partial")
        staging.mkdir(parents=True)
        print(
            "spark: resolving the Kafka connector's jars from Maven Central (once)...", flush=True
        )
        proc = subprocess.run(
            [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
             f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            output = (proc.stdout + proc.stderr).strip().splitlines()
            raise UserError(
                "Maven could not resolve Spark's Kafka connector (is Maven Central reachable?)"
                + (f": {output[-1]}" if output else "")
            )
        (staging / ".resolved").touch()
        try:
            staging.rename(lib)
        except OSError:  # another process got there first
            shutil.rmtree(staging, ignore_errors=True)
    jars = sorted(p for p in lib.glob("*.jar") if p.name.startswith(CONNECTOR_JARS))
    if len(jars) != len(CONNECTOR_JARS):
        raise UserError(f"{lib} lacks some of Spark's Kafka connector jars; delete it and retry")
    return jars


def local_conf(master: str, app_name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Settings of a local session (the tests' sessions use the same)."""
    _require("java", "openjdk-17-jre-headless")
    return {
        "spark.master": master,
        "spark.app.name": app_name,
        "spark.jars": ",".join(str(p) for p in connector_jars()),
        # executors' Python workers run this interpreter (the project's virtualenv)
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.memory": "1g",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        **(extra or {}),
    }


def get_session(
    *, submitted: bool, master: str, app_name: str, extra: dict[str, str] | None = None
) -> Any:
    """The session: spark-submit's when submitted, otherwise a local one."""
    from pyspark.sql import SparkSession

    # pyspark 4.2 warns about pandas 3 on every Arrow function; the job uses no pandas
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    # py4j logs every callback connection at INFO
    logging.getLogger("py4j").setLevel(logging.WARNING)
    builder = SparkSession.builder.appName(app_name)
    if not submitted:
        # pyspark starts the executors' Python workers with PYSPARK_PYTHON (not the
        # spark.pyspark.python setting): they must run this interpreter, which has the project
        os.environ["PYSPARK_PYTHON"] = sys.executable
        for key, value in local_conf(master, app_name, extra).items():
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
