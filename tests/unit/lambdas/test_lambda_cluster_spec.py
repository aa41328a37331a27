"""The RunJobFlow request built from a cluster profile, checked against EMR's own API model."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from botocore.validate import ParamValidator

from lambdas.shared.cluster_spec import run_job_flow_request
from lambdas.shared.creation import create_cluster
from lambdas.shared.models import CreateClusterRequest
from tests.lambda_support import STACK


def _request(payload: dict[str, Any], **cluster) -> CreateClusterRequest:
    payload = dict(payload, cluster=dict(payload["cluster"], **cluster))
    return CreateClusterRequest.model_validate(payload)


@pytest.mark.parametrize("use_spot", [True, False], ids=["spot", "on-demand"])
def test_request_is_valid_for_emr(create_payload, use_spot):
    params = run_job_flow_request(_request(create_payload, use_spot=use_spot), stack=STACK)

    service = boto3.client("emr", region_name="us-east-1").meta.service_model
    shape = service.operation_model("RunJobFlow").input_shape
    assert shape is not None
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()


def test_spot_core_falls_back_to_on_demand_across_all_subnets(create_payload):
    params = run_job_flow_request(_request(create_payload, use_spot=True), stack=STACK)

    master, core = params["Instances"]["InstanceFleets"]
    assert (master["InstanceFleetType"], master["TargetOnDemandCapacity"]) == ("MASTER", 1)
    assert "TargetSpotCapacity" not in master
    assert core["InstanceFleetType"] == "CORE"
    assert (core["TargetSpotCapacity"], core["TargetOnDemandCapacity"]) == (2, 0)
    spot = core["LaunchSpecifications"]["SpotSpecification"]
    assert spot["TimeoutAction"] == "SWITCH_TO_ON_DEMAND"
    assert params["Instances"]["Ec2SubnetIds"] == ["subnet-0a1b2c3d", "subnet-0e1f2a3b"]


def test_on_demand_core_has_no_spot(create_payload):
    params = run_job_flow_request(_request(create_payload, use_spot=False), stack=STACK)

    core = params["Instances"]["InstanceFleets"][1]
    assert core["TargetOnDemandCapacity"] == 2
    assert "TargetSpotCapacity" not in core
    assert "LaunchSpecifications" not in core


def test_lifecycle_safety_settings(create_payload):
    params = run_job_flow_request(_request(create_payload, idle_timeout_minutes=45), stack=STACK)

    assert params["Name"] == "nightshift-example-2024-06-01"
    assert params["AutoTerminationPolicy"] == {"IdleTimeout": 45 * 60}
    assert params["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert params["Instances"]["TerminationProtected"] is False
    assert params["VisibleToAllUsers"] is True
    assert params["Instances"]["EmrManagedMasterSecurityGroup"] == "sg-0aa11bb22"
    assert params["Instances"]["EmrManagedSlaveSecurityGroup"] == "sg-0cc33dd44"
    assert params["Instances"]["ServiceAccessSecurityGroup"] == "sg-0ee55ff66"
    assert params["Instances"]["Ec2KeyName"] == "nightshift"
    assert params["StepConcurrencyLevel"] == 4
    assert params["BootstrapActions"] == [
        {
            "Name": "publish-ssh-host-keys",
            "ScriptBootstrapAction": {
                "Path": "s3://nightshift-assets-123456789012/publish_host_keys.sh",
                # The host-key prefix travels as the script's argument: one definition, in the Lambdas.
                "Args": ["/nightshift/host-keys/"],
            },
        }
    ]
    assert {t["Key"]: t["Value"] for t in params["Tags"]} == {
        "nightshift:pipeline": "example",
        "nightshift:run-id": "example-2024-06-01-a1b2",
        "nightshift:run-date": "2024-06-01",
        "nightshift:execution-arn": create_payload["execution_arn"],
        "nightshift:launch-attempt": "1",
        "nightshift:stack": "Nightshift",
        "nightshift:managed": "true",
        # AmazonEMRServicePolicy_v2 launches instances only for clusters carrying it.
        "for-use-with-amazon-emr-managed-policies": "true",
    }


def test_runjobflow_is_sent_with_fleets_and_idle_timeout(create_payload):
    # moto accepts RunJobFlow but drops InstanceFleets and AutoTerminationPolicy (and has no
    # GetAutoTerminationPolicy), so the call as sent is checked with a Stubber instead.
    request = CreateClusterRequest.model_validate(create_payload)
    emr = boto3.client("emr", region_name="us-east-1")
    tags = run_job_flow_request(request, stack=STACK)["Tags"]
    with Stubber(emr) as stub:
        stub.add_response("list_clusters", {"Clusters": []})
        stub.add_response(
            "run_job_flow", {"JobFlowId": "j-2NEWCLUSTER"}, run_job_flow_request(request, stack=STACK)
        )
        stub.add_response(
            "describe_cluster",
            {"Cluster": {"Id": "j-2NEWCLUSTER", "Name": "n", "Status": {"State": "STARTING"}, "Tags": tags}},
            {"ClusterId": "j-2NEWCLUSTER"},
        )
        result = create_cluster(request, stack=STACK, emr=emr)
        stub.assert_no_pending_responses()

    assert (result.cluster_id, result.created) == ("j-2NEWCLUSTER", True)


@pytest.mark.parametrize("use_spot", [True, False], ids=["spot", "on-demand"])
def test_master_only_cluster_has_one_node_and_no_core_fleet(create_payload, use_spot):
    params = run_job_flow_request(
        _request(create_payload, core_instance_count=0, use_spot=use_spot), stack=STACK
    )

    (master,) = params["Instances"]["InstanceFleets"]
    assert (master["InstanceFleetType"], master["TargetOnDemandCapacity"]) == ("MASTER", 1)
    service = boto3.client("emr", region_name="us-east-1").meta.service_model
    shape = service.operation_model("RunJobFlow").input_shape
    assert shape is not None
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()


def test_security_configuration_is_named_when_given(create_payload):
    payload = dict(create_payload, security_configuration="Nightshift-emr")
    params = run_job_flow_request(CreateClusterRequest.model_validate(payload), stack=STACK)

    assert params["SecurityConfiguration"] == "Nightshift-emr"
    assert "SecurityConfiguration" not in run_job_flow_request(_request(create_payload), stack=STACK)
