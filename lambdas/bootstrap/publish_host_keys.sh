#!/bin/bash
# EMR bootstrap action: publish the master node's SSH host public keys to SSM so the runner can
# pin them. Runs on every node; does nothing (and succeeds) on core and task nodes.
#
# Usage: publish_host_keys.sh HOST_KEY_PREFIX (the Lambdas pass lambdas.shared.hostkeys.HOST_KEY_PREFIX).
# Writes SSM String parameter <HOST_KEY_PREFIX><cluster-id>, one "TYPE BASE64" per line, once:
# the instance role may not overwrite a pin, so an existing one fails the bootstrap instead.
# The paths can be overridden for tests through NIGHTSHIFT_INFO_DIR and NIGHTSHIFT_SSH_DIR.
set -euo pipefail

prefix="${1:-}"
if [[ "${prefix}" != /*/ ]]; then
  echo "publish_host_keys: usage: $0 HOST_KEY_PREFIX (an SSM path such as /nightshift/host-keys/)" >&2
  exit 2
fi

info_dir="${NIGHTSHIFT_INFO_DIR:-/mnt/var/lib/info}"
ssh_dir="${NIGHTSHIFT_SSH_DIR:-/etc/ssh}"

log() { echo "publish_host_keys: $*" >&2; }

# instance.json is written by EMR before bootstrap actions run; "isMaster": true on the master.
if ! grep -Eq '"isMaster"[[:space:]]*:[[:space:]]*true' "${info_dir}/instance.json" 2>/dev/null; then
  log "not the master node, nothing to publish"
  exit 0
fi

cluster_id="$(sed -nE 's/.*"jobFlowId"[[:space:]]*:[[:space:]]*"(j-[A-Z0-9]+)".*/\1/p' \
  "${info_dir}/job-flow.json" | head -n 1)"
if [[ -z "${cluster_id}" ]]; then
  log "no jobFlowId in ${info_dir}/job-flow.json"
  exit 1
fi

keys=""
for pub in "${ssh_dir}"/ssh_host_*_key.pub; do
  [[ -r "${pub}" ]] || continue
  # Keep "TYPE BASE64" and drop the comment (usually root@hostname).
  line="$(awk 'NF >= 2 { print $1 " " $2; exit }' "${pub}")"
  [[ -n "${line}" ]] && keys+="${line}"$'\n'
done
keys="${keys%$'\n'}"
if [[ -z "${keys}" ]]; then
  # Failing the master's bootstrap ends the run at once with BOOTSTRAP_FAILURE, instead of the
  # runner refusing an unpinned host key later.
  log "no host public keys in ${ssh_dir}"
  exit 1
fi

region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
if [[ -z "${region}" ]]; then
  token="$(curl -sS --max-time 2 -X PUT http://169.254.169.254/latest/api/token \
    -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')"
  region="$(curl -sS --max-time 2 -H "X-aws-ec2-metadata-token: ${token}" \
    http://169.254.169.254/latest/meta-data/placement/region)"
fi

parameter="${prefix}${cluster_id}"
aws ssm put-parameter --region "${region}" --name "${parameter}" --type String \
  --value "${keys}" >/dev/null
log "published $(grep -c '' <<<"${keys}") host keys to ${parameter}"
