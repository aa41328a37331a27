"""The local engine: spark-sql from pyspark on this machine, warm (one engine process kept up) or cold."""
