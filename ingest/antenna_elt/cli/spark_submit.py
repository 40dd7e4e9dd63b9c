"""The spark-submit entry point of ``antenna-elt ingest spark``::

    spark-submit --packages org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0 \\
        [--master ... --py-files antenna_elt.zip ...] \\
        ingest/antenna_elt/cli/spark_submit.py --lake s3://bucket/lake [ingest spark options]

Its arguments are those of ``antenna-elt ingest spark``; the session, its master and its
jars come from spark-submit.
"""

from __future__ import annotations

import sys

from antenna_elt.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", "spark", *sys.argv[1:]]))
