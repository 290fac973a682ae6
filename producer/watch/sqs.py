"""S3 event notifications from SQS as the watcher's source (``watch --mode sqs``).

Delivery is at-least-once and unordered, so an event is only a hint: the object is looked
up again (HEAD) and handled as whatever version is there now; a duplicate, late or
out-of-order event finds the file done, moved or in hand. Keys arrive URL-encoded
(``+`` for spaces). The ``s3:TestEvent`` S3 sends when the notification is configured,
``ObjectRemoved`` events and keys outside the inbox are acknowledged and ignored; S3→SNS→SQS
envelopes are unwrapped.

A message is deleted only once every file it names is handled (moved, or found done);
while its files' jobs run its visibility is extended. A file another watcher holds makes
the message reappear after one lease, so a dead watcher's file is taken over; on stop,
unhandled messages are made visible again at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote_plus

from producer.watch.store import _hidden
from producer.watch.watcher import FINAL, Result, Watcher
from workers.settings import Settings

Offer = Future[Result] | Literal["done", "busy"]


def sqs_client(settings: Settings) -> Any:
    """SQS with the object store's region and credentials (unset: the AWS defaults)."""
    return settings.s3.aws_client("sqs", settings.sqs_endpoint_url)


def object_keys(body: str, bucket: str) -> list[str] | None:
    """The decoded keys of ``ObjectCreated`` records in ``bucket``; None for a message that
    is no S3 event (the test event included)."""
    try:
        event = json.loads(body)
        if event.get("Type") == "Notification" and "Message" in event:  # via SNS
            event = json.loads(event["Message"])
    except (ValueError, AttributeError, TypeError):
        return None
    if not isinstance(event, dict) or "Records" not in event:
        return None
    keys = []
    for record in event["Records"]:
        s3 = record.get("s3", {})
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        if s3.get("bucket", {}).get("name") == bucket and "key" in s3.get("object", {}):
            keys.append(unquote_plus(s3["object"]["key"]))
    return keys


@dataclass
class _Pending:
    receipt: str
    offers: list[Offer]
    extended_at: float = field(default_factory=time.monotonic)

    def settled(self) -> bool:
        return all(not isinstance(o, Future) or o.done() for o in self.offers)

    def handled(self) -> bool:
        """Every file is moved or found done: the message can be deleted."""
        for o in self.offers:
            if isinstance(o, str):
                if o != "done":
                    return False
            elif o.exception() is not None or o.result().outcome not in FINAL:
                return False
        return True


class SqsSource:
    """Receives S3 events for ``watcher``'s inbox and deletes each once handled."""

    def __init__(self, watcher: Watcher, client: Any, queue_url: str) -> None:
        self.w = watcher
        self._c = client
        self._url = queue_url
        self._lease = watcher.settings.watch_lease_s
        self._pending: list[_Pending] = []
        self.say: Callable[[str], None] = watcher._say

    def run(self, once: bool) -> list[Result]:
        """Receive until stopped (once: until the queue answers empty), then wait for the
        files in hand and settle their messages."""
        wait_s = 1 if once else int(min(20, max(1, self.w.settings.watch_poll_s)))
        while not self.w.stop.is_set():
            try:
                messages = self._receive(wait_s)
            except Exception as exc:  # SQS, S3 or Redis unreachable: a service keeps trying
                if once:
                    raise
                self.say(f"error receiving from {self._url}: {exc!r} (retrying)")
                self.w.stop.wait(self.w.settings.watch_poll_s)
                continue
            if once and not messages:
                break
        while self._pending and not self.w.stop.is_set():
            self._settle()
            time.sleep(0.2)
        results = self.w.drain()
        self._settle()  # stopping: what was handed back becomes visible again at once
        return results

    def _receive(self, wait_s: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self._c.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_s,
            VisibilityTimeout=2 * self._lease,
        ).get("Messages", [])
        for message in messages:
            self._accept(message)
        self._settle()
        return messages

    def _accept(self, message: dict[str, Any]) -> None:
        keys = object_keys(message.get("Body", ""), self.w.folder.bucket)
        if keys is None and '"s3:TestEvent"' in message.get("Body", ""):
            self.say("S3 test event received: the bucket notification reaches this queue")
        elif keys is None:
            self.say(
                f"ignored a message that is no S3 object event: {message.get('Body', '')[:200]}"
            )
        offers: list[Offer] = []
        for key in keys or []:
            folder = self.w.folder
            if not folder.contains(key) or _hidden(key.removeprefix(folder.inbox)):
                continue
            current = self.w.inbox.head(key)
            offers.append("done" if current is None else self.w.offer(current))
        self._pending.append(_Pending(message["ReceiptHandle"], offers))

    def _settle(self) -> None:
        now = time.monotonic()
        keep = []
        for p in self._pending:
            if p.settled():
                if p.handled():
                    self._c.delete_message(QueueUrl=self._url, ReceiptHandle=p.receipt)
                else:  # another watcher has it, or it failed to run: look again later
                    self._visible_in(p, 0 if self.w.stop.is_set() else self._lease)
            else:
                if now - p.extended_at > self._lease / 2:
                    self._visible_in(p, 2 * self._lease)
                    p.extended_at = now
                keep.append(p)
        self._pending = keep

    def _visible_in(self, p: _Pending, seconds: int) -> None:
        self._c.change_message_visibility(
            QueueUrl=self._url, ReceiptHandle=p.receipt, VisibilityTimeout=seconds
        )
