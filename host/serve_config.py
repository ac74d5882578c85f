"""The live venue's effective configuration: the venue JSON plus the users file.

Users file: one `username:password[:firm[:protocol]]` a line; blank lines and
lines starting with '#' are skipped.  username is 1 to 6 characters (the
SoupBinTCP Login Request field), password 1 to 10, firm one of the
configuration's firms (default `default_firm`, else the first firm), protocol
one of PROTOCOLS (default "ouch42").

Session table (docs/serve.md, "Sessions"): the configuration's sessions come
first, in order, and speak the UDP framing (refmodel/session.py); then one
session per user, in file order, named by the username, with the user's firm
and the configuration's default risk limits (`risk`), speaking SoupBinTCP.
User sessions get synthetic addresses (10.0.2.k, port 41000+k-1, MAC
02:00:00:00:02:kk for the k-th user) used only to build `tickcore replay`
frames.  Passwords are not part of the effective configuration (and are not
journaled); everything else is, and a restart against an existing journal
must produce the same effective configuration.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

from tickcore.refmodel.config import MAX_SESSIONS, ConfigError, load_config

PROTOCOLS = ("ouch42", "ouch50", "ouch50-oc")
UDP = "udp"
SERVE_FORMAT = 1


@dataclass(frozen=True)
class User:
    name: str
    password: str
    firm: str | None
    protocol: str


@dataclass(frozen=True)
class ServeSpec:
    """What the engine and the edges need: the VenueConfig with every session, and
    each session's protocol ("udp" or one of PROTOCOLS)."""
    cfg: object
    protocols: tuple
    effective: dict                  # JSON object stored in the journal

    def session_names(self, protocol_filter=None):
        return [s.name.rstrip(" ") for s, p in zip(self.cfg.sessions, self.protocols,
                                                   strict=True)
                if protocol_filter is None or p in protocol_filter]


def _text_ok(text: str, size: int) -> bool:
    return 0 < len(text) <= size and text.isascii() and text.isprintable() \
        and " " not in text


def parse_users(text: str, source: str = "users file") -> list[User]:
    users, seen = [], set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{lineno}"
        parts = line.split(":")
        if not 2 <= len(parts) <= 4:
            raise ConfigError(f"{where}: expected username:password[:firm[:protocol]]")
        name, password = parts[0], parts[1]
        firm = parts[2] if len(parts) > 2 and parts[2] else None
        protocol = parts[3] if len(parts) > 3 and parts[3] else "ouch42"
        if not _text_ok(name, 6):
            raise ConfigError(f"{where}: username must be 1 to 6 printable ASCII characters "
                              f"without spaces or ':'")
        if not _text_ok(password, 10):
            raise ConfigError(f"{where}: password must be 1 to 10 printable ASCII characters "
                              f"without spaces or ':'")
        if firm is not None and not _text_ok(firm, 4):
            raise ConfigError(f"{where}: firm must be 1 to 4 characters")
        if protocol not in PROTOCOLS:
            raise ConfigError(f"{where}: protocol {protocol!r}: expected one of "
                              f"{', '.join(PROTOCOLS)}")
        if name in seen:
            raise ConfigError(f"{where}: user {name} listed twice")
        seen.add(name)
        users.append(User(name, password, firm, protocol))
    if not users:
        raise ConfigError(f"{source}: no users")
    return users


def read_users(path) -> list[User]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read users file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse_users(text, str(path))


def _venue_source(config_source) -> dict:
    """The merged venue JSON (defaults applied) of None, a dict or a file path."""
    return copy.deepcopy(load_config(config_source).source)


def build_spec(config_source, users: list[User], default_firm: str | None = None) -> ServeSpec:
    """The effective configuration: venue sessions, then one session per user."""
    source = _venue_source(config_source)
    firms = [f["firm"] for f in source["firms"]]
    if default_firm is None:
        default_firm = firms[0]
    if default_firm not in firms:
        raise ConfigError(f"default firm {default_firm} is not in the configuration's firms")
    venue_names = {s["name"] for s in source["sessions"]}
    if len(source["sessions"]) + len(users) > MAX_SESSIONS:
        raise ConfigError(f"{len(source['sessions'])} configured sessions and {len(users)} "
                          f"users exceed the {MAX_SESSIONS} sessions a venue holds")
    protocols = [UDP] * len(source["sessions"])
    for k, user in enumerate(users, 1):
        if user.name in venue_names:
            raise ConfigError(f"user {user.name}: a configured (UDP) session has that name")
        firm = user.firm or default_firm
        if firm not in firms:
            raise ConfigError(f"user {user.name}: firm {firm} is not in the configuration's "
                              f"firms ({', '.join(firms)})")
        source["sessions"].append({
            "name": user.name, "firm": firm, "ip": f"10.0.2.{k}", "port": 41000 + k - 1,
            "mac": f"02:00:00:00:02:{k:02x}"})
        protocols.append(user.protocol)
    cfg = load_config(source)
    effective = {"format": SERVE_FORMAT, "venue": cfg.source, "protocols": protocols}
    return ServeSpec(cfg=cfg, protocols=tuple(protocols), effective=effective)


def spec_from_effective(effective: dict) -> ServeSpec:
    """Rebuild the spec stored in a journal's CONFIG record."""
    if effective.get("format") != SERVE_FORMAT:
        raise ConfigError(f"journal configuration format {effective.get('format')!r} is not "
                          f"{SERVE_FORMAT}")
    cfg = load_config(effective["venue"])
    protocols = tuple(effective["protocols"])
    if len(protocols) != len(cfg.sessions):
        raise ConfigError("journal configuration: protocols do not match sessions")
    return ServeSpec(cfg=cfg, protocols=protocols, effective=effective)


def canonical(effective: dict) -> str:
    return json.dumps(effective, sort_keys=True, separators=(",", ":"))


def describe_difference(stored: dict, current: dict) -> str:
    """A short human description of why two effective configurations differ."""
    a, b = stored.get("venue", {}), current.get("venue", {})
    sa = [(s.get("name"), s.get("firm")) for s in a.get("sessions", [])]
    sb = [(s.get("name"), s.get("firm")) for s in b.get("sessions", [])]
    if sa != sb:
        return (f"sessions differ (journal: {', '.join(f'{n}/{f}' for n, f in sa)}; "
                f"now: {', '.join(f'{n}/{f}' for n, f in sb)})")
    if stored.get("protocols") != current.get("protocols"):
        return "session protocols differ"
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            return f"venue configuration key {key!r} differs"
    return "configuration differs"

