"""The network: private subnets for the runner task and the clusters, and their security groups."""

from __future__ import annotations

from aws_cdk import Tags
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import ExistingNetwork

SSH_PORT = 22
# EMR's service access security group: the master calls the service on 9443, the service
# reaches master and core on 8443 (see "Amazon EMR-managed security groups" in the EMR guide).
EMR_SERVICE_INBOUND_PORT = 9443
EMR_SERVICE_OUTBOUND_PORT = 8443
# AmazonEMRServicePolicy_v2 only touches resources carrying this tag.
EMR_MANAGED_TAG = ("for-use-with-amazon-emr-managed-policies", "true")


class Network(Construct):
    """Either the configured VPC and its private subnets, or a new small VPC (2 AZs, 1 NAT gateway)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, existing: ExistingNetwork | None, log_bucket: s3.IBucket
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc, self.private_subnets = (
            self._import_vpc(existing) if existing else self._build_vpc(log_bucket)
        )
        self.runner_security_group = self._security_group(
            "Runner", "Nightshift runner task", all_outbound=True
        )
        self.master_security_group = self._security_group(
            "Master", "EMR master (EMR-managed)", all_outbound=True
        )
        self.core_security_group = self._security_group("Core", "EMR core (EMR-managed)", all_outbound=True)
        self.service_access_security_group = self._security_group(
            "ServiceAccess", "EMR service access (EMR-managed)", all_outbound=False
        )
        self._allow_emr_traffic()
        self.master_security_group.add_ingress_rule(
            self.runner_security_group, ec2.Port.tcp(SSH_PORT), "SSH from the Nightshift runner only"
        )

    @property
    def subnet_ids(self) -> list[str]:
        return [subnet.subnet_id for subnet in self.private_subnets.subnets or []]

    def _import_vpc(self, existing: ExistingNetwork) -> tuple[ec2.IVpc, ec2.SubnetSelection]:
        # from_vpc_attributes, not from_lookup: synth must not call AWS.
        vpc = ec2.Vpc.from_vpc_attributes(
            self,
            "Vpc",
            vpc_id=existing.vpc_id,
            availability_zones=list(existing.availability_zones),
            private_subnet_ids=list(existing.private_subnet_ids),
        )
        return vpc, ec2.SubnetSelection(subnets=vpc.private_subnets)

    def _build_vpc(self, log_bucket: s3.IBucket) -> tuple[ec2.IVpc, ec2.SubnetSelection]:
        vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr("10.42.0.0/16"),
            max_azs=2,
            # One NAT gateway, not one per AZ: a nightly batch can wait out an AZ outage.
            nat_gateways=1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20
                ),
            ],
            # A free gateway endpoint: cluster S3 traffic skips the NAT gateway's per-GB charge.
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
            flow_logs={
                "ToLogBucket": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_s3(log_bucket, "vpc-flow-logs/"),
                    traffic_type=ec2.FlowLogTrafficType.REJECT,
                )
            },
        )
        for subnet in vpc.private_subnets:
            Tags.of(subnet).add(*EMR_MANAGED_TAG)
        Tags.of(vpc).add(*EMR_MANAGED_TAG)
        return vpc, ec2.SubnetSelection(subnets=vpc.private_subnets)

    def _security_group(self, name: str, description: str, *, all_outbound: bool) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self,
            f"{name}SecurityGroup",
            vpc=self.vpc,
            description=description,
            allow_all_outbound=all_outbound,
        )
        Tags.of(group).add(*EMR_MANAGED_TAG)
        return group

    def _allow_emr_traffic(self) -> None:
        service = self.service_access_security_group
        service.add_ingress_rule(
            self.master_security_group, ec2.Port.tcp(EMR_SERVICE_INBOUND_PORT), "EMR master to service"
        )
        for group in (self.master_security_group, self.core_security_group):
            service.add_egress_rule(group, ec2.Port.tcp(EMR_SERVICE_OUTBOUND_PORT), "EMR service to nodes")
