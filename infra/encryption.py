"""KMS keys: the log groups' (CloudWatch Logs may use it), the alerts' (alarms may), EMR's disks."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_emr as emr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.nag import suppress


class Encryption(Construct):
    """The log key (created, or named in cdk.json) and, unless opted out, EMR's security configuration."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_key_arn: str | None,
        emr_security_configuration: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_key = self._log_key(log_key_arn)
        self.alert_key = self._alert_key()
        self.disk_key: kms.Key | None = None
        self.security_configuration: emr.CfnSecurityConfiguration | None = None
        if emr_security_configuration:
            self.disk_key = kms.Key(
                self,
                "EmrDiskKey",
                description="Nightshift: EMR local disk and EBS encryption",
                enable_key_rotation=True,
                # Retained: a disk of a cluster still terminating must stay readable.
                removal_policy=RemovalPolicy.RETAIN,
            )
            self.security_configuration = self._security_configuration(self.disk_key)

    @property
    def security_configuration_name(self) -> str | None:
        return self.security_configuration.ref if self.security_configuration is not None else None

    def grant_cluster(self, instance_role: iam.IRole, service_role: iam.IRole) -> None:
        """What encrypted local disks and EBS volumes need: the nodes use the key, EMR grants it to EBS."""
        if self.disk_key is None:
            return
        self.disk_key.grant_encrypt_decrypt(instance_role)
        # What the principal that launches encrypted EBS volumes needs ("How Amazon EBS encryption
        # works", EBS User Guide): EMR's service role launches them. Grants only for AWS resources.
        self.disk_key.grant(
            service_role,
            "kms:Decrypt",
            "kms:DescribeKey",
            "kms:GenerateDataKeyWithoutPlaintext",
            "kms:ReEncrypt*",
        )
        service_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
                resources=[self.disk_key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            )
        )
        for role in (instance_role, service_role):
            suppress(
                role,
                "AwsSolutions-IAM5",
                "KMS's own action families for one key (the EMR disk key): re-encrypting and generating "
                "data keys of every kind is what encrypted local disks and EBS volumes need.",
                applies_to=["Action::kms:ReEncrypt*", "Action::kms:GenerateDataKey*"],
            )

    def _alert_key(self) -> kms.Key:
        # Customer managed, not alias/aws/sns: that AWS managed key's policy cannot let CloudWatch
        # use it, so alarms could not publish to the topic ("Enable compatibility between event
        # sources from AWS services and encrypted topics", Amazon SNS Developer Guide).
        key = kms.Key(
            self,
            "AlertKey",
            description="Nightshift: the alert topic and the queue of scheduled starts that failed",
            enable_key_rotation=True,
            # Nothing stays encrypted under it for long: SNS and SQS hold messages for days at most.
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsPublishToTheAlertTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )
        return key

    def _log_key(self, arn: str | None) -> kms.IKey:
        if arn is not None:
            # The named key's policy must already allow CloudWatch Logs (docs/infra.md says how).
            return kms.Key.from_key_arn(self, "LogKey", arn)
        key = kms.Key(
            self,
            "LogKey",
            description="Nightshift: step output, execution and Lambda log groups",
            enable_key_rotation=True,
            # Retained with the log groups it encrypts: deleting it would make them unreadable.
            removal_policy=RemovalPolicy.RETAIN,
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                        )
                    }
                },
            )
        )
        return key

    def _security_configuration(self, disk_key: kms.IKey) -> emr.CfnSecurityConfiguration:
        return emr.CfnSecurityConfiguration(
            self,
            "EmrSecurityConfiguration",
            security_configuration=(
                {
                    "EncryptionConfiguration": {
                        "EnableInTransitEncryption": False,
                        "EnableAtRestEncryption": True,
                        "AtRestEncryptionConfiguration": {
                            "LocalDiskEncryptionConfiguration": {
                                "EncryptionKeyProviderType": "AwsKms",
                                "AwsKmsKey": disk_key.key_arn,
                                "EnableEbsEncryption": True,
                            }
                        },
                    },
                    # IMDSv2 only, one hop: code in a container on a node cannot reach the
                    # instance role's credentials through the metadata service.
                    "InstanceMetadataServiceConfiguration": {
                        "MinimumInstanceMetadataServiceVersion": 2,
                        "HttpPutResponseHopLimit": 1,
                    },
                }
            ),
        )
