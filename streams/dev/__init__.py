"""Tools to try and test leadflow on one machine: the simulator, the embedded tansu broker, Apache Kafka fetched
with Maven and run on loopback, `leadflow run` (runner) and worker subprocesses."""
