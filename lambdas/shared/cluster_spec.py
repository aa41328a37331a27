"""Translate a pipeline's cluster profile into the RunJobFlow request (pure, no AWS calls)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lambdas.shared.catalog import emr_configurations
from lambdas.shared.clusters import (
    TAG_EMR_MANAGED_POLICIES,
    TAG_EXECUTION_ARN,
    TAG_LAUNCH_ATTEMPT,
    TAG_MANAGED,
    TAG_PIPELINE,
    TAG_RUN_DATE,
    TAG_RUN_DATES,
    TAG_RUN_ID,
    TAG_STACK,
)
from lambdas.shared.hostkeys import HOST_KEY_PREFIX
from lambdas.shared.models import CreateClusterRequest

if TYPE_CHECKING:
    from mypy_boto3_emr.type_defs import (
        EbsConfigurationTypeDef,
        InstanceFleetConfigTypeDef,
        RunJobFlowInputTypeDef,
    )

# Long enough for EMR to try every subnet's Spot pools, short enough that a night without
# Spot capacity falls back to On-Demand instead of starting the run late.
SPOT_TIMEOUT_MINUTES = 10
BOOTSTRAP_ACTION_NAME = "publish-ssh-host-keys"


def cluster_name(pipeline: str, run_date: str) -> str:
    return f"nightshift-{pipeline}-{run_date}"


def cluster_tags(request: CreateClusterRequest, stack: str) -> dict[str, str]:
    """The tags that idempotency, preflight, the sweeper and IAM find a run's cluster by."""
    # A batch's cluster holds every date of its range: Preflight reads the range from this tag.
    batch = (
        {}
        if request.last_run_date is None
        else {TAG_RUN_DATES: f"{request.run_date}..{request.last_run_date}"}
    )
    return {
        TAG_PIPELINE: request.pipeline,
        TAG_RUN_ID: request.run_id,
        TAG_RUN_DATE: request.run_date.isoformat(),
        TAG_EXECUTION_ARN: request.execution_arn,
        TAG_LAUNCH_ATTEMPT: str(request.attempt),
        TAG_STACK: stack,
        TAG_MANAGED: "true",
        # Without it EMR's service role may not create the cluster's instances: no night would start.
        TAG_EMR_MANAGED_POLICIES: "true",
        **batch,
    }


def _ebs(size_gb: int) -> EbsConfigurationTypeDef:
    return {
        "EbsBlockDeviceConfigs": [
            {"VolumeSpecification": {"VolumeType": "gp3", "SizeInGB": size_gb}, "VolumesPerInstance": 1}
        ],
        "EbsOptimized": True,
    }


def _instance_fleets(request: CreateClusterRequest) -> list[InstanceFleetConfigTypeDef]:
    profile = request.cluster
    master: InstanceFleetConfigTypeDef = {
        "Name": "master",
        "InstanceFleetType": "MASTER",
        "TargetOnDemandCapacity": 1,
        "InstanceTypeConfigs": [
            {"InstanceType": profile.master_instance_type, "EbsConfiguration": _ebs(profile.ebs_volume_gb)}
        ],
    }
    if profile.core_instance_count == 0:
        # Master-only: EMR runs HDFS, YARN and the steps on the one node; a core fleet with a
        # target capacity of 0 would be refused.
        return [master]
    core: InstanceFleetConfigTypeDef = {
        "Name": "core",
        "InstanceFleetType": "CORE",
        "InstanceTypeConfigs": [
            {"InstanceType": profile.core_instance_type, "EbsConfiguration": _ebs(profile.ebs_volume_gb)}
        ],
    }
    if profile.use_spot:
        core["TargetSpotCapacity"] = profile.core_instance_count
        core["TargetOnDemandCapacity"] = 0
        core["LaunchSpecifications"] = {
            "SpotSpecification": {
                "TimeoutDurationMinutes": SPOT_TIMEOUT_MINUTES,
                "TimeoutAction": "SWITCH_TO_ON_DEMAND",
                "AllocationStrategy": "price-capacity-optimized",
            },
            "OnDemandSpecification": {"AllocationStrategy": "lowest-price"},
        }
    else:
        core["TargetOnDemandCapacity"] = profile.core_instance_count
    return [master, core]


def run_job_flow_request(request: CreateClusterRequest, *, stack: str) -> RunJobFlowInputTypeDef:
    """The RunJobFlow parameters for one run; always instance fleets (see docs/lambdas.md)."""
    profile = request.cluster
    network = request.network
    params: RunJobFlowInputTypeDef = {
        "Name": cluster_name(request.pipeline, request.run_date.isoformat()),
        "ReleaseLabel": profile.release_label,
        "Applications": [{"Name": name} for name in profile.applications],
        "LogUri": request.log_uri,
        "ServiceRole": request.roles.service_role,
        "JobFlowRole": request.roles.instance_profile,
        "VisibleToAllUsers": True,
        "StepConcurrencyLevel": profile.step_concurrency_level,
        "AutoTerminationPolicy": {"IdleTimeout": profile.idle_timeout_minutes * 60},
        "Instances": {
            "InstanceFleets": _instance_fleets(request),
            # With fleets EMR picks the subnet (and so the AZ) that has the capacity.
            "Ec2SubnetIds": list(network.subnet_ids),
            "Ec2KeyName": network.ec2_key_name,
            "EmrManagedMasterSecurityGroup": network.master_security_group,
            "EmrManagedSlaveSecurityGroup": network.core_security_group,
            "ServiceAccessSecurityGroup": network.service_access_security_group,
            # The runner submits steps over SSH, not as EMR steps: without this the cluster
            # would shut down the moment it became ready.
            "KeepJobFlowAliveWhenNoSteps": True,
            "TerminationProtected": False,
        },
        "BootstrapActions": [
            {
                "Name": BOOTSTRAP_ACTION_NAME,
                # The prefix travels as an argument so that the script and the Lambdas cannot disagree.
                "ScriptBootstrapAction": {"Path": request.bootstrap_script_uri, "Args": [HOST_KEY_PREFIX]},
            }
        ],
        "Tags": [{"Key": key, "Value": value} for key, value in cluster_tags(request, stack).items()],
    }
    if request.security_configuration is not None:
        params["SecurityConfiguration"] = request.security_configuration
    configurations = emr_configurations(profile)
    if configurations:
        params["Configurations"] = configurations
    return params
