"""What the pull API needs to answer a poll, kept in each web process's memory.

A fleet polls far more often than its configuration changes. Answering from memory makes an
unchanged poll (304) a SHA-256 and a dictionary lookup, with no database or cache round trip.

Correctness rests on invalidation, not on expiry: every change to an instance (its token, its
URL, its assigned version, its deletion) publishes the instance's id on a Redis channel once the
transaction commits, and every web process drops that entry. A process trusts its memory only
while it is subscribed: until the subscription is confirmed, and from the moment the connection
is lost or Redis stops answering pings, it clears its memory and answers from the database. So a
message missed while disconnected cannot leave a stale entry behind. Without Redis (the embedded
defaults) nothing is kept and every pull reads the database.

Entries also expire after MAX_AGE_SECONDS, a bound on staleness should a publisher fail to reach
Redis while the subscribers still can.

A process that must read the database anyway (a poll it does not hold, or holds past
MAX_AGE_SECONDS) also reads the next LOAD_BATCH instances of the fleet, in id order, wrapping
around at its end. A new process thus holds a fleet of 100,000 after ~100 cold polls rather than
100,000, and since the sweep reads them in the order it read them before, the oldest entries
are the next ones it reads again: renewing a whole fleet every MAX_AGE_SECONDS costs a batch
query per LOAD_BATCH instances, not one per instance (docs/BENCHMARKS.md, P1).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import sys
import threading
import time
import weakref
from collections import OrderedDict

from django.conf import settings
from django.db import transaction
from django.utils.translation import ngettext

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "diffgram-sso:pull-state:"  # + the database name: consoles sharing a Redis
LISTENER_NAME = "diffgram-sso-pull-state"
MAX_AGE_SECONDS = 600
LOAD_BATCH = 1_000  # instances read with each cold poll (see above)
MAX_ENTRIES = 150_000  # a bound on each web process's memory: ~120 MB (docs/BENCHMARKS.md, M)
# Rendered answers (they hold secrets) are kept for the most recent few only: a fleet polls
# unchanged configurations (304, no body), and fetches a body once per change.
MAX_BODIES = 2_000
PING_EVERY_SECONDS = 2
SILENCE_LIMIT_SECONDS = 6  # no answer to pings for this long: the connection is dead


class PulledInstance:
    """What the pull API needs of an instance. Every web process keeps one for each instance
    of the fleet, so it is small (docs/BENCHMARKS.md, M): slots rather than a model's
    dictionary, the token's digest rather than its hex, the few distinct short strings shared.
    It stands for the instance where a poll writes to the history (audit.py reads
    audit_actor_type, audit_target_type, pk and str())."""

    __slots__ = (
        "pk", "name", "url_base", "token_digest", "assigned_version", "assignment_sequence",
        "last_pull_at", "last_pulled_version_number", "applied_version_number",
        "applied_status", "signin_runner",
    )  # fmt: skip
    audit_actor_type = audit_target_type = "instance"

    def __init__(self, instance):
        self.pk = instance.pk
        self.name = instance.name
        self.url_base = instance.url_base
        self.token_digest = bytes.fromhex(instance.token_hash)
        self.assigned_version = instance.assigned_version
        self.assignment_sequence = instance.assignment_sequence
        self.last_pull_at = instance.last_pull_at
        self.last_pulled_version_number = instance.last_pulled_version_number
        self.applied_version_number = instance.applied_version_number
        self.applied_status = sys.intern(instance.applied_status)
        self.signin_runner = sys.intern(instance.signin_runner)

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_digest, hashlib.sha256(token.encode()).digest())

    def __str__(self):
        return self.name


class PullState:
    """One instance as the pull API sees it, with what was derived from it."""

    __slots__ = ("instance", "loaded_at", "content_hash", "signin_revision")

    def __init__(self, instance: PulledInstance):
        self.instance = instance
        self.loaded_at = time.monotonic()
        self.content_hash: str | None = None  # of what it receives (ConfigVersion.content_hash_for)
        self.signin_revision: int | None = None  # of the test account its agent is sent


class PullStates:
    def __init__(self):
        self._lock = threading.Lock()
        self._entries = {}
        self._bodies: OrderedDict[tuple[int, str], str] = OrderedDict()  # (id, what+ETag)
        # version identity -> the copy entries share
        self._versions: weakref.WeakValueDictionary[tuple, object] = weakref.WeakValueDictionary()
        self._generation = 0  # bumped by every drop: a load that raced a drop is not kept
        self._sweep_after = 0  # the id after which the next batch is read
        self._subscribed = False
        self._listener = None  # (pid, redis url, channel, stop event)

    # --- the request path -------------------------------------------------------------------

    def get(self, instance_id, load, load_batch=None) -> PullState | None:
        """The instance's state from memory, or `load()` (None when there is no such
        instance); kept only while subscribed and if nothing was dropped meanwhile. When it is
        read from the database, so is the next batch of the fleet: `load_batch(after, count)`,
        up to `count` instances with an id above `after`, in id order."""
        self._ensure_listener()
        entry = self._entries.get(instance_id)
        fresh = entry is not None and time.monotonic() - entry.loaded_at < MAX_AGE_SECONDS
        if fresh and self._subscribed:
            return entry
        generation = self._generation
        instance = load()
        if instance is None:
            return None
        entry = self._keep([instance], generation)[0]
        if load_batch is not None and self._subscribed and len(self._entries) < MAX_ENTRIES:
            after = self._sweep_after
            batch = load_batch(after, LOAD_BATCH)
            with self._lock:
                if self._sweep_after == after:  # another thread may have read it meanwhile
                    full_batch = len(batch) == LOAD_BATCH  # else the end: start again
                    self._sweep_after = batch[-1].pk if full_batch else 0
            # Not the asked instance again: the request goes on with the copy returned.
            self._keep([other for other in batch if other.pk != instance_id], generation)
        return entry

    def _keep(self, instances, generation) -> list[PullState]:
        """States for freshly loaded instances, kept while there is room (or they replace
        older entries), unless something was dropped since `generation`."""
        states = []
        for instance in instances:
            version = instance.assigned_version
            if version is not None:
                # Versions never change: the instances on one version share one copy (memory,
                # and one decryption of its secrets per process). Keyed by what the version
                # is, not by its id alone: an id can be handed out again (SQLite reuses the id
                # of a rolled-back insert), and a copy still alive must never answer for
                # another version.
                instance.assigned_version = self._versions.setdefault(_identity(version), version)
            states.append(PullState(PulledInstance(instance)))
        with self._lock:
            if self._subscribed and generation == self._generation:
                entries = self._entries
                for state in states:
                    pk = state.instance.pk
                    if len(entries) < MAX_ENTRIES or pk in entries:  # past it: the database
                        entries[pk] = state
        return states

    def body(self, state: PullState, key: str, render) -> str:
        """A rendered answer for the instance (`key`: what it is, and the ETag it answers
        for), from memory or `render()`; kept, for the MAX_BODIES latest, while subscribed."""
        slot = (state.instance.pk, key)
        body = self._bodies.get(slot)
        if body is not None:
            return body
        generation = self._generation
        body = render()
        with self._lock:
            if self._subscribed and generation == self._generation:
                self._bodies[slot] = body
                if len(self._bodies) > MAX_BODIES:
                    self._bodies.popitem(last=False)  # the oldest
        return body

    def drop(self, instance_ids=None) -> None:
        """Forget some instances (or all): they are read from the database next time."""
        with self._lock:
            self._generation += 1
            if instance_ids is None:
                self._sweep_after = 0
                self._entries.clear()
                self._versions.clear()
                self._bodies.clear()
            else:
                dropped = set(instance_ids)
                for instance_id in dropped:
                    self._entries.pop(instance_id, None)
                for slot in [slot for slot in self._bodies if slot[0] in dropped]:
                    del self._bodies[slot]

    @property
    def size(self) -> int:
        """How many instances this process answers from memory."""
        return len(self._entries)

    @property
    def trusted(self) -> bool:
        """Whether this process answers from memory (it is subscribed to invalidations)."""
        return self._subscribed

    # --- invalidation -----------------------------------------------------------------------

    def invalidate(self, instance_ids) -> None:
        """Once the current transaction commits, drop these instances here and in every other
        web process."""
        ids = sorted({int(i) for i in instance_ids})
        if ids:
            transaction.on_commit(lambda: self._announce(ids))

    def _announce(self, ids):
        self.drop(ids)
        url = settings.PULL_STATE_REDIS_URL
        if not url:
            return
        payload = f"{_origin()} {','.join(map(str, ids))}"
        for attempt in (1, 2):
            try:
                _publisher(url).publish(_channel(), payload)
                return
            except Exception as error:  # noqa: BLE001 - any Redis failure; the change is committed
                if attempt == 2:
                    instances = ngettext("%d instance", "%d instances", len(ids)) % len(ids)
                    logger.error(
                        "Could not announce a change to %s to the other web processes (%s); "
                        "they serve it within %d s.",
                        instances, type(error).__name__, MAX_AGE_SECONDS,
                    )  # fmt: skip

    # --- the subscription -------------------------------------------------------------------

    def _ensure_listener(self):
        wanted = (os.getpid(), settings.PULL_STATE_REDIS_URL, _channel())
        listener = self._listener
        if listener is not None and listener[:3] == wanted:
            return
        with self._lock:
            listener = self._listener
            if listener is not None and listener[:3] == wanted:
                return
            if listener is not None:
                listener[3].set()  # settings changed (tests): stop the old subscription
            self._subscribed = False
            self._entries.clear()
            self._bodies.clear()
            self._generation += 1
            stop = threading.Event()
            self._listener = (*wanted, stop)
        _, url, channel = wanted
        if url:
            threading.Thread(
                target=self._listen, args=(url, channel, stop), name="pull-state-listener",
                daemon=True,
            ).start()  # fmt: skip

    def _set_subscribed(self, subscribed, stop):
        with self._lock:
            if stop.is_set():
                return
            self._subscribed = subscribed
            self._entries.clear()  # messages may have been missed while not subscribed
            self._bodies.clear()
            self._generation += 1

    def _listen(self, url, channel, stop):
        quiet = False  # one warning per outage, not one a second
        while not stop.is_set():
            pubsub = None
            try:
                import redis  # when first needed, not at start-up (console/signals.py)

                client = redis.Redis.from_url(
                    url, socket_connect_timeout=5, socket_timeout=5, socket_keepalive=True,
                    client_name=f"{LISTENER_NAME}-{os.getpid()}",  # CLIENT LIST shows whose
                )  # fmt: skip
                pubsub = client.pubsub()
                pubsub.subscribe(channel)
                last_heard = last_ping = time.monotonic()
                while not stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    now = time.monotonic()
                    if message is not None:
                        last_heard = now
                        if message["type"] == "subscribe":
                            self._set_subscribed(True, stop)
                            if quiet:
                                logger.warning("Pull state: subscribed to Redis again.")
                            quiet = False
                        elif message["type"] == "message":
                            origin, ids = message["data"].decode().split(" ", 1)
                            if origin != _origin():  # this process dropped them already
                                self.drop(int(i) for i in ids.split(","))
                    elif now - last_heard > SILENCE_LIMIT_SECONDS:
                        raise ConnectionError("Redis did not answer pings")
                    if now - last_ping >= PING_EVERY_SECONDS:
                        pubsub.ping()
                        last_ping = now
            except Exception as error:  # noqa: BLE001 - reconnect whatever went wrong
                if not quiet:
                    logger.warning(
                        "Pull state: not subscribed to Redis (%s); pulls read the database "
                        "until it is back.",
                        type(error).__name__,
                    )
                quiet = True
            finally:
                self._set_subscribed(False, stop)
                if pubsub is not None:
                    with contextlib.suppress(Exception):  # the connection is gone anyway
                        pubsub.close()
            stop.wait(1)


def _identity(version) -> tuple:
    """What makes two loaded versions the same one: equal here means equal content."""
    return (version.pk, version.provider_id, version.number, version.content_hash)


_publishers: dict[tuple[int, str], object] = {}


_origins: dict[int, str] = {}


def _origin():
    """A random name for this process (per pid: forked workers must not share it)."""
    return _origins.setdefault(os.getpid(), secrets.token_hex(8))


def _channel():
    return CHANNEL_PREFIX + str(settings.DATABASES["default"]["NAME"])


def _publisher(url):
    client = _publishers.get((os.getpid(), url))
    if client is None:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        _publishers[(os.getpid(), url)] = client
    return client


pull_states = PullStates()


def forget_instance(sender, instance, **kwargs) -> None:
    """Signal receiver: an instance was saved or deleted."""
    pull_states.invalidate([instance.pk])
