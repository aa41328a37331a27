"""The log bucket: EMR cluster logs and VPC flow logs, encrypted, TLS-only, expiring."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.nag import checkov_skip, suppress

EMR_LOG_PREFIX = "emr/"


class Storage(Construct):
    LOGICAL_ID = "EmrLogBucket"

    def __init__(self, scope: Construct, construct_id: str, *, expiry_days: int) -> None:
        super().__init__(scope, construct_id)
        self.log_bucket = self._build_log_bucket(expiry_days)

    @property
    def emr_log_uri(self) -> str:
        return self.log_bucket.s3_url_for_object(EMR_LOG_PREFIX)

    def _build_log_bucket(self, expiry_days: int) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "LogBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-logs",
                    expiration=Duration.days(expiry_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            # Logs outlive a mistaken `cdk destroy`; the lifecycle rule keeps the cost bounded.
            removal_policy=RemovalPolicy.RETAIN,
        )
        # Pinned: renaming the construct must never replace the bucket and orphan its logs.
        bucket.node.default_child.override_logical_id(self.LOGICAL_ID)  # type: ignore[union-attr]
        suppress(
            bucket,
            "AwsSolutions-S1",
            "This is the log bucket itself; access logs of a log bucket would need a second log bucket.",
        )
        checkov_skip(
            bucket,
            "CKV_AWS_18",
            "This is the log bucket itself; access logs of a log bucket would need a second log bucket.",
        )
        checkov_skip(
            bucket,
            "CKV_AWS_21",
            "Logs are written once and expire; versions would only keep deleted logs past their "
            "expiry, at a cost.",
        )
        return bucket
