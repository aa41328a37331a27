#!/usr/bin/env bash
# The canary's third stage: the table's data files, listed with `hadoop fs -ls` where the catalog says
# they are (S3 through EMRFS for a Glue catalog, HDFS for a cluster metastore). This proves what a .sh
# step of a night relies on: the cluster's Hadoop client, and the instance profile's right to list
# the warehouse. The pipeline's variables arrive as environment variables (canary_database, run_date).
set -euo pipefail

if ! command -v hadoop >/dev/null 2>&1; then
  echo "nightshift canary: no hadoop here: this step lists the table's files with hadoop fs on a cluster (run the canary there: --deployed --canary)" >&2
  exit 127
fi

# Hive's DESCRIBE FORMATTED has a line "Location:<blanks><tab><uri>": the table's data, as the catalog has it.
location=$(hive -S -e "DESCRIBE FORMATTED ${canary_database}.nightshift_canary" | awk '$1 == "Location:" { print $2; exit }')
if [ -z "$location" ]; then
  echo "nightshift canary: the catalog gives no location for ${canary_database}.nightshift_canary" >&2
  exit 1
fi
echo "${canary_database}.nightshift_canary's data: $location"
listing=$(hadoop fs -ls "$location")
echo "$listing"
# A file's line starts with its permissions ("-rw-..."): the INSERT of the first stage wrote one.
if ! grep -q '^-' <<<"$listing"; then
  echo "nightshift canary: no data file under $location, though the first stage wrote a row" >&2
  exit 1
fi
