"""S3 event notifications on an SQS queue, as a deployment sets them up (MT_DATA_EVENTS_QUEUE), on moto: it sends
them as S3 does. Used by the trigger's tests (tests/plugins/test_events.py) and the live standalone's."""

from __future__ import annotations


def notifying_queue(bucket: str, name: str, endpoint_url: str | None = None,
                    visibility_seconds: int | None = None) -> str:
    """Create an SQS queue receiving `bucket`'s s3:ObjectCreated:* notifications; returns its URL."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=endpoint_url)
    attributes = {"VisibilityTimeout": str(visibility_seconds)} if visibility_seconds is not None else {}
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    boto3.client("s3", endpoint_url=endpoint_url).put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    return url


def messages_in(url: str, endpoint_url: str | None = None) -> int:
    """Messages in the queue, visible or received and not yet deleted."""
    import boto3

    attributes = boto3.client("sqs", endpoint_url=endpoint_url).get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attributes["Attributes"].values())
