"""moto_server with the DynamoDB look-ups DynamoDB has and moto 5.2 lacks.

DynamoDB: moto keeps a table's items in a dict by hash key, yet answers a Query on
the table by sorting every item of the table and keeping the hash key's
(`Table.query` over `Table.all_items`), and sorts the whole table again for
every Scan page. A reconcile Queries each user: on moto that is N users
times a sort of the table, about an hour at 10,000 users, where DynamoDB
reads only the user's rows. Two changes, no answer different:

* a Query on the table (no index) reads the hash key's own items;
* the sorted list of all items is kept until an item is put or deleted
  (every write goes through `Table.put_item` or `Table.delete_item`; an
  update rewrites its item in place or through `put_item`).

ECR: moto answers DescribeRepositories with every repository whatever
`maxResults` asks, so a caller holds 55,000 repositories at once where ECR
would give it pages of up to 1,000. A request with `maxResults` (and no
`repositoryNames`) gets ECR's page of that many and a `nextToken` (the
offset; the rig's AWS front, which pages itself, sends moto neither).

SQS: moto computes every queue attribute, the message counts among them (a
pass over every message each), for each message sent (to read
ContentBasedDeduplication) and for each message received (to read
MessageRetentionPeriod), so a queue of N messages costs N passes per
send or receive: a backfill of 20,000 work items slowed to a few a second.
Queue attributes are computed when asked for, one by one, and the
retention check reads the queue's retention; the visible messages are
walked only as far as a receive reads them; a delete makes one pass. The
answers are the same.

Run as moto_server is: `python moto_server.py -H 127.0.0.1 -p PORT`. Used
by the test rig (tests/rig/moto.rs), the stand-ins (stand-ins.sh) and the
benches; `MOTO_SERVER` still picks another server.
"""

import inspect
import sys
import threading
from collections.abc import Mapping

from moto.core.responses import ActionResult
from moto.dynamodb.models import table as tables
from moto.ecr.responses import ECRResponse
from moto.sqs import models as sqs_models

_local = threading.local()
_stock_query = tables.Table.query
_stock_all_items = tables.Table.all_items
_stock_put_item = tables.Table.put_item
_stock_delete_item = tables.Table.delete_item
_query_signature = inspect.signature(_stock_query)


def _written(table):
    table.__dict__["_rig_generation"] = table.__dict__.get("_rig_generation", 0) + 1


def put_item(self, *args, **kwargs):
    try:
        return _stock_put_item(self, *args, **kwargs)
    finally:
        _written(self)


def delete_item(self, *args, **kwargs):
    try:
        return _stock_delete_item(self, *args, **kwargs)
    finally:
        _written(self)


def all_items(self):
    only = getattr(_local, "hash_key_of", None)
    if only is not None and only[0] is self:
        # A Query on the table: its hash key's items (the caller sorts them).
        found = self.items.get(only[1])  # .get: the defaultdict must not grow
        if found is None:
            return []
        return list(found.values()) if self.range_key_attr else [found]
    # Read the generation before the items: a write meanwhile makes the
    # next call sort again.
    generation = self.__dict__.get("_rig_generation", 0)
    cached = self.__dict__.get("_rig_all_items")
    if cached is None or cached[0] != generation or cached[1] is not self.items:
        cached = (generation, self.items, _stock_all_items(self))
        self.__dict__["_rig_all_items"] = cached
    return list(cached[2])


def query(self, hash_key, *args, **kwargs):
    index_name = _query_signature.bind(self, hash_key, *args, **kwargs).arguments.get("index_name")
    if index_name is not None or hash_key is None:
        return _stock_query(self, hash_key, *args, **kwargs)
    _local.hash_key_of = (self, hash_key)
    try:
        return _stock_query(self, hash_key, *args, **kwargs)
    finally:
        _local.hash_key_of = None


def describe_repositories(self):
    max_results = self._get_param("maxResults")
    if max_results is None or self._get_param("repositoryNames"):
        return _stock_describe_repositories(self)
    repositories = self.ecr_backend.describe_repositories(registry_id=self._get_param("registryId"))
    start = int(self._get_param("nextToken") or 0)
    end = start + int(max_results)
    answer = {"repositories": repositories[start:end], "failures": []}
    if end < len(repositories):
        answer["nextToken"] = str(end)
    return ActionResult(answer)


class LazyQueueAttributes(Mapping):
    """A queue's attributes as moto's `Queue.attributes` gives them, each
    computed only when read."""

    def __init__(self, queue):
        self._queue = queue

    def _names(self):
        queue = self._queue
        names = list(queue.BASE_ATTRIBUTES)
        if queue.fifo_queue:
            names += queue.FIFO_ATTRIBUTES
        if queue.kms_master_key_id:
            names += queue.KMS_ATTRIBUTES
        if queue.policy:
            names.append("Policy")
        if queue.redrive_policy:
            names.append("RedrivePolicy")
        return names

    def __getitem__(self, name):
        queue = self._queue
        if name == "Policy" and queue.policy:
            return queue.policy
        if name == "RedrivePolicy" and queue.redrive_policy:
            return sqs_models.json.dumps(queue.redrive_policy)
        if name not in self._names():
            raise KeyError(name)
        value = getattr(queue, sqs_models.camelcase_to_underscores(name))
        return str(value).lower() if isinstance(value, bool) else value

    def __iter__(self):
        return iter(self._names())

    def __len__(self):
        return len(self._names())


def queue_attributes(self):
    return LazyQueueAttributes(self)


def is_message_valid_based_on_retention_period(self, queue_name, message):
    retention_period = self.get_queue(queue_name).message_retention_period
    return int(retention_period) + message.sent_timestamp / 1000 > sqs_models.unix_time()


_stock_get_queue_attributes = sqs_models.SQSBackend.get_queue_attributes


def get_queue_attributes(self, queue_name, attribute_names):
    # "All" answers the mapping itself: the caller gets a plain dict.
    return dict(_stock_get_queue_attributes(self, queue_name, attribute_names))


class VisibleMessages:
    """`Queue.messages` (visible, not delayed) walked as far as it is read."""

    def __init__(self, queue):
        self._queue = queue

    def __iter__(self):
        return (m for m in list(self._queue._messages) if m.visible and not m.delayed)

    def __len__(self):
        return sum(1 for _ in self)

    def __bool__(self):
        return any(True for _ in self)


def visible_messages(self):
    return VisibleMessages(self)


def delete_message(self, receipt_handle):
    if receipt_handle in self.deleted_messages:
        return
    for i, message in enumerate(self._messages):
        if message.had_receipt_handle(receipt_handle):
            self.pending_messages.discard(message)
            self.deleted_messages.update(message.all_receipt_handles)
            del self._messages[i]
            return
    raise sqs_models.ReceiptHandleIsInvalid()


sqs_models.Queue.messages = property(visible_messages)
sqs_models.Queue.delete_message = delete_message
sqs_models.Queue.attributes = property(queue_attributes)
sqs_models.SQSBackend.get_queue_attributes = get_queue_attributes
sqs_models.SQSBackend.is_message_valid_based_on_retention_period = (
    is_message_valid_based_on_retention_period
)
_stock_describe_repositories = ECRResponse.describe_repositories
ECRResponse.describe_repositories = describe_repositories
tables.Table.put_item = put_item
tables.Table.delete_item = delete_item
tables.Table.all_items = all_items
tables.Table.query = query

if __name__ == "__main__":
    from moto.server import main

    sys.argv[0] = "moto_server"
    sys.exit(main())
