"""A valid create_cluster payload, shared by the Lambda unit and integration tests."""

from __future__ import annotations

from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"

CREATE_PAYLOAD: dict[str, Any] = {
    "pipeline": "example",
    "run_id": "example-2024-06-01-a1b2",
    "run_date": "2024-06-01",
    "execution_arn": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:nightshift-example:run-1",
    "cluster": {
        "release_label": "emr-7.13.0",
        "applications": ["Hive", "Spark"],
        "master_instance_type": "m7g.xlarge",
        "core_instance_type": "r7g.2xlarge",
        "core_instance_count": 2,
        "use_spot": True,
        "idle_timeout_minutes": 60,
        "step_concurrency_level": 4,
        "ebs_volume_gb": 128,
    },
    "network": {
        "subnet_ids": ["subnet-0a1b2c3d", "subnet-0e1f2a3b"],
        "master_security_group": "sg-0aa11bb22",
        "core_security_group": "sg-0cc33dd44",
        "service_access_security_group": "sg-0ee55ff66",
        "ec2_key_name": "nightshift",
    },
    "roles": {"service_role": "nightshift-emr-service", "instance_profile": "nightshift-emr-ec2"},
    "log_uri": "s3://nightshift-logs-123456789012/emr/",
    "bootstrap_script_uri": "s3://nightshift-assets-123456789012/publish_host_keys.sh",
}
