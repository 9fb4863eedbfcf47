"""The few AWS calls the local scripts make against moto, as one small CLI
(boto3 from moto's venv stands in for the aws CLI, which is not installed).

    local_aws.py MOTO_URL put-mapping NAME JSON
    local_aws.py MOTO_URL create-users-table
    local_aws.py MOTO_URL put-row USER WORKSPACE ACCOUNT STATUS
    local_aws.py MOTO_URL delete-row USER WORKSPACE
    local_aws.py MOTO_URL granted ROLE_ARN REPOSITORY     -> accounts our statement grants ("none")
    local_aws.py MOTO_URL policy ROLE_ARN REPOSITORY      -> the policy document, indented
    local_aws.py MOTO_URL repository ROLE_ARN REPOSITORY  -> "uri tags=... scan_on_push=..."
    local_aws.py MOTO_URL create-queue NAME                -> the queue URL
    local_aws.py MOTO_URL create-backfill-table NAME      (the template's BackfillRunTable; its
                 ReconcileRunTable has the same key)
    local_aws.py MOTO_URL reconcile-run TABLE             -> the full reconcile's run item, as JSON
    local_aws.py MOTO_URL record-image REPOSITORY TAG LAYOUT_JSON
                 (ECR's record of an image pushed to the local registry: what DescribeImages lists)
    local_aws.py MOTO_URL drain-queue QUEUE_URL INVOKE_URL -> "N invocations, M retried"
                 (plays Lambda's SQS event source mapping: each message, as an SQS event, to the
                 function's Invoke API, e.g. cargo lambda watch's; deleted unless reported failed)

Table and statement names are the ones the scripts deploy: gen3-pay-models,
AllowCrossAccountPull. Exit status 1 with a message on any failure.
"""

import json
import sys

import boto3

TABLE = "gen3-pay-models"
SID = "AllowCrossAccountPull"
REGION = "us-east-1"


def client(url, service, role_arn=None):
    if role_arn is None:
        return boto3.client(service, endpoint_url=url, region_name=REGION)
    creds = client(url, "sts").assume_role(RoleArn=role_arn, RoleSessionName="local-check")["Credentials"]
    return boto3.client(service, endpoint_url=url, region_name=REGION,
                        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])


def policy_of(url, role_arn, repository):
    ecr = client(url, "ecr", role_arn)
    try:
        return json.loads(ecr.get_repository_policy(repositoryName=repository)["policyText"])
    except ecr.exceptions.RepositoryPolicyNotFoundException:
        return None


def main(url, op, *args):
    if op == "put-mapping":
        name, value = args
        client(url, "ssm").put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
    elif op == "create-users-table":
        client(url, "dynamodb").create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"},
                       {"AttributeName": "bmh_workspace_id", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"},
                                  {"AttributeName": "bmh_workspace_id", "AttributeType": "S"}],
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    elif op == "put-row":
        user, workspace, account, status = args
        client(url, "dynamodb").put_item(TableName=TABLE, Item={
            "user_id": {"S": user}, "bmh_workspace_id": {"S": workspace}, "account_id": {"S": account},
            "workspace_type": {"S": "Direct Pay"}, "request_status": {"S": status}})
    elif op == "delete-row":
        user, workspace = args
        client(url, "dynamodb").delete_item(
            TableName=TABLE, Key={"user_id": {"S": user}, "bmh_workspace_id": {"S": workspace}})
    elif op == "granted":
        doc = policy_of(url, *args)
        ours = [s for s in (doc or {}).get("Statement", []) if s.get("Sid") == SID]
        principals = ours[0]["Principal"]["AWS"] if ours else []
        principals = [principals] if isinstance(principals, str) else principals
        print(",".join(sorted(p.split(":")[4] for p in principals)) or "none")
    elif op == "policy":
        doc = policy_of(url, *args)
        print(json.dumps(doc, indent=2) if doc else "none")
    elif op == "repository":
        role_arn, repository = args
        r = client(url, "ecr", role_arn).describe_repositories(repositoryNames=[repository])["repositories"][0]
        print(f"{r['repositoryUri']} tags={r['imageTagMutability']} "
              f"scan_on_push={r['imageScanningConfiguration']['scanOnPush']}")
    elif op == "create-queue":
        (name,) = args
        print(client(url, "sqs").create_queue(QueueName=name)["QueueUrl"])
    elif op == "create-backfill-table":
        (name,) = args
        client(url, "dynamodb").create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "run", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "run", "AttributeType": "S"}])
    elif op == "record-image":
        repository, tag, layout_json = args
        layout = json.load(open(layout_json))
        manifest = open(f"{layout['dir']}/blobs/sha256/{layout['digest'].split(':')[1]}").read()
        ecr = client(url, "ecr")
        try:
            ecr.create_repository(repositoryName=repository)
        except ecr.exceptions.RepositoryAlreadyExistsException:
            pass
        # moto would otherwise derive the digest from the layer digests, not the manifest bytes as ECR does.
        ecr.put_image(repositoryName=repository, imageTag=tag, imageManifest=manifest,
                      imageManifestMediaType=layout["media_type"], imageDigest=layout["digest"])
    elif op == "reconcile-run":
        (table,) = args
        item = client(url, "dynamodb").get_item(TableName=table, Key={"run": {"S": "reconcile"}},
                                                ConsistentRead=True).get("Item")
        if item is None:
            raise SystemExit(f"no reconcile run in {table}")
        print(json.dumps({k: next(iter(v.values())) for k, v in item.items()}, sort_keys=True))
    elif op == "drain-queue":
        queue_url, invoke_url = args
        drain(client(url, "sqs"), queue_url, invoke_url)
    else:
        raise SystemExit(f"local_aws.py: unknown operation {op!r}")


def drain(sqs, queue_url, invoke_url):
    import time
    import urllib.request
    invocations = retried = 0
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 5:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1,
                                       VisibilityTimeout=60).get("Messages", [])
        if not messages:
            time.sleep(0.2)
            continue
        idle_since = time.monotonic()
        m = messages[0]
        event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"],
                              "body": m["Body"], "attributes": {}, "messageAttributes": {},
                              "eventSource": "aws:sqs", "awsRegion": REGION,
                              "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:ecr-bridge-backfill"}]}
        request = urllib.request.Request(invoke_url, data=json.dumps(event).encode(), method="POST")
        answer = json.load(urllib.request.urlopen(request, timeout=300))
        invocations += 1
        if answer.get("batchItemFailures"):
            retried += 1
            sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"],
                                          VisibilityTimeout=0)
        else:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    print(f"{invocations} invocations, {retried} retried")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    try:
        main(*sys.argv[1:])
    except Exception as e:  # one line for the calling script's log
        raise SystemExit(f"local_aws.py {' '.join(sys.argv[2:3])}: {e}")
