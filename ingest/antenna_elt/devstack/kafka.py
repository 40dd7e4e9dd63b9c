"""The local Kafka broker: a single-node KRaft broker from the official
``org.apache.kafka:kafka_2.13`` jars on Maven Central, resolved by Maven from
``files/kafka-pom.xml`` into a cache (only when missing or when the pom changed), storage
formatted once, the broker started detached under ``<home>/kafka``. When
``KAFKA_BOOTSTRAP_SERVERS`` points elsewhere, that broker is left to the user and only
checked."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from antenna_elt.devstack.service import Service
from antenna_elt.errors import UserError
from antenna_elt.settings import PROJECT_ROOT, Settings

FILES = Path(__file__).resolve().parent / "files"
START_TIMEOUT = 90.0
TOPIC_PARTITIONS = 3


def require(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise UserError(
            f"`{tool}` not found on PATH: install it with `apt-get install -y {package}`"
        )
    return found


def kafka_dir(settings: Settings) -> Path:
    return settings.home / "kafka"


def service(settings: Settings) -> Service:
    kdir = kafka_dir(settings)
    return Service(
        name="the Kafka broker",
        port=settings.kafka_port,
        pidfile=kdir / "broker.pid",
        logfile=kdir / "broker.log",
        answers=lambda: kafka_answers(settings.kafka_bootstrap_servers),
        start_timeout=START_TIMEOUT,
        port_taken_hint=(
            "stop it, or set ANTENNA_ELT_KAFKA_PORT to a free port, or "
            "KAFKA_BOOTSTRAP_SERVERS to use that broker"
        ),
    )


def _jars_dir() -> Path:
    """The jars are a cache shared by every stack of this checkout (tests start private
    stacks), one per pom version."""
    digest = hashlib.sha256((FILES / "kafka-pom.xml").read_bytes()).hexdigest()[:16]
    return PROJECT_ROOT / ".stack" / "cache" / f"kafka-lib-{digest}"


def check_prerequisites(settings: Settings) -> None:
    """Fail before starting anything when a tool the local broker needs is missing."""
    if settings.kafka_external:
        return
    require("java", "openjdk-17-jre-headless")
    if not (_jars_dir() / ".resolved").exists():
        require("mvn", "maven")


def _kafka_jars(settings: Settings) -> Path:
    """Resolve the broker's jars with Maven, once per pom version."""
    pom = FILES / "kafka-pom.xml"
    lib = _jars_dir()
    stamp = lib / ".resolved"
    if stamp.exists():
        return lib
    require("java", "openjdk-17-jre-headless")
    mvn = require("mvn", "maven")
    if lib.exists():
        shutil.rmtree(lib)
    lib.mkdir(parents=True)
    print("kafka: resolving the broker's jars from Maven Central (once)...", flush=True)
    proc = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={lib}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise UserError(
            "Maven could not resolve the Kafka jars (is Maven Central reachable?): "
            + (proc.stdout + proc.stderr).strip().splitlines()[-1:][0]
            if (proc.stdout + proc.stderr).strip()
            else "Maven could not resolve the Kafka jars"
        )
    stamp.touch()
    return lib


def _kafka_config(settings: Settings) -> Path:
    kdir = kafka_dir(settings)
    template = (FILES / "server.properties").read_text()
    text = template.format(
        port=settings.kafka_port,
        controller_port=settings.kafka_port + 1,
        data_dir=kdir / "data",
        partitions=TOPIC_PARTITIONS,
    )
    path = kdir / "server.properties"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _java_cmd(lib: Path, *args: str, heap: str = "256m") -> list[str]:
    java = require("java", "openjdk-17-jre-headless")
    return [
        java,
        f"-Xmx{heap}",
        f"-Dlog4j2.configurationFile={FILES / 'log4j2.properties'}",
        "-cp",
        f"{lib}/*",
        *args,
    ]


def _format_kafka_storage(settings: Settings, lib: Path, config: Path) -> None:
    data = kafka_dir(settings) / "data"
    if (data / "meta.properties").exists():
        return
    cluster_file = kafka_dir(settings) / "cluster.id"
    if not cluster_file.exists():
        out = subprocess.run(
            _java_cmd(lib, "kafka.tools.StorageTool", "random-uuid"),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        cluster_file.write_text(out.strip().splitlines()[-1])
    proc = subprocess.run(
        _java_cmd(
            lib,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            cluster_file.read_text().strip(),
            "-c",
            str(config),
            "--ignore-formatted",
        ),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise UserError(
            f"formatting Kafka storage failed: {(proc.stdout + proc.stderr).strip()[-500:]}"
        )


def kafka_pid(settings: Settings) -> int | None:
    return service(settings).running_pid()


def kafka_answers(bootstrap: str, timeout: float = 5.0) -> bool:
    from kafka import KafkaConsumer

    try:
        consumer = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","),
            request_timeout_ms=int(timeout * 1000) + 1000,
            enable_auto_commit=False,
        )
    except Exception:
        return False
    try:
        consumer.topics()
        return True
    except Exception:
        return False
    finally:
        consumer.close()


def start_kafka(settings: Settings) -> str:
    """Start the local broker (or check the external one); return a status line."""
    if settings.kafka_external:
        if not kafka_answers(settings.kafka_bootstrap_servers):
            raise UserError(
                f"Kafka at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS) does not "
                "answer; start it or unset KAFKA_BOOTSTRAP_SERVERS to use the local broker"
            )
        return f"kafka: external at {settings.kafka_bootstrap_servers} (KAFKA_BOOTSTRAP_SERVERS)"
    broker = service(settings)

    def launch() -> int:
        kdir = kafka_dir(settings)
        kdir.mkdir(parents=True, exist_ok=True)
        lib = _kafka_jars(settings)
        config = _kafka_config(settings)
        _format_kafka_storage(settings, lib, config)
        return broker.spawn(_java_cmd(lib, "kafka.Kafka", str(config), heap="512m"), cwd=kdir)

    pid, started = broker.start(launch)
    if not started:
        return f"kafka: already running (pid {pid}, {settings.kafka_bootstrap_servers})"
    return f"kafka: started (pid {pid}, {settings.kafka_bootstrap_servers}, log {broker.logfile})"


def ensure_topic(settings: Settings, topic: str, partitions: int = TOPIC_PARTITIONS) -> bool:
    """Create ``topic`` if missing; True when it was created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers.split(","))
    try:
        if topic in admin.list_topics():
            return False
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)])
        except TopicAlreadyExistsError:
            return False
        return True
    finally:
        admin.close()


def stop_kafka(settings: Settings) -> str:
    if settings.kafka_external:
        return "kafka: external, left alone"
    pid = service(settings).stop()
    return "kafka: not running" if pid is None else f"kafka: stopped (pid {pid})"


def kill_kafka(settings: Settings) -> None:
    """SIGKILL the local broker (crash tests)."""
    service(settings).kill()
