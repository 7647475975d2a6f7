"""``crazyflies.yaml``: the robots a radio bridge drives, versioned and layered.

Layout (Crazyswarm2's idea: ``fileversion``, then ``all`` defaults, then per-robot entries that
override them)::

    fileversion: 1
    all:                        # any CrazyflieLinkConfig field, plus takeoff_height_m
      setpoint_rate_hz: 50
      battery_land_v: 3.3
      geofence: {lower_m: [-2, -2, 0], upper_m: [2, 2, 2]}
    robots:
      cf1: {uri: radio://0/80/2M/E7E7E7E701, initial_position: [0.0, 0.0, 0.0]}
      cf2: {uri: radio://0/80/2M/E7E7E7E702, initial_position: [0.5, 0.0, 0.0],
            enabled: false, battery_land_v: 3.4}

Every field is checked on load; an error names the file and the field
(``crazyflies.yaml: robots.cf2.uri: ...``).
"""
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ros_nodes.crazyflie_link import CrazyflieLinkConfig
from ros_nodes.transport import check_robot_name
from sim.config import build_dataclass, read_yaml_mapping
from sim.errors import ConfigError

FILE_VERSION = 1
URI_SCHEMES = ("radio://", "udp://", "usb://")
ROBOT_KEYS = ("uri", "initial_position", "enabled")
EXTRA_KEYS = ("takeoff_height_m", "takeoff_duration_s")


@dataclass(frozen=True)
class CrazyflieEntry:
    name: str
    uri: str
    initial_position_m: tuple[float, float, float]
    enabled: bool
    link: CrazyflieLinkConfig
    takeoff_height_m: float = 1.0
    takeoff_duration_s: float = 2.0


def _link_config(data: dict[str, Any], where: str) -> tuple[CrazyflieLinkConfig, dict]:
    link_keys = {f.name for f in dataclasses.fields(CrazyflieLinkConfig)}
    extra = {k: data[k] for k in EXTRA_KEYS if k in data}
    unknown = sorted(set(data) - link_keys - set(EXTRA_KEYS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown option; allowed: "
                          f"{', '.join(sorted(link_keys | set(EXTRA_KEYS)))}")
    fields = {k: v for k, v in data.items() if k in link_keys}
    try:
        cfg = build_dataclass(CrazyflieLinkConfig, fields, where)
        cfg.validate()
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    for key, value in extra.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{where}.{key}: must be a number > 0, got {value!r}")
    return cfg, extra


def load_crazyflies(path: str | Path) -> list[CrazyflieEntry]:
    """The robots of a ``crazyflies.yaml``, enabled or not, in file order."""
    path = Path(path)
    doc = read_yaml_mapping(path)
    unknown = sorted(set(doc) - {"fileversion", "all", "robots"})
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown section; allowed: fileversion, all, "
                          "robots")
    if doc.get("fileversion") != FILE_VERSION:
        raise ConfigError(f"{path}: fileversion: this swarm-rl reads version {FILE_VERSION}, "
                          f"got {doc.get('fileversion')!r}")
    defaults = doc.get("all") or {}
    robots = doc.get("robots")
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: all: expected a mapping")
    if not isinstance(robots, dict) or not robots:
        raise ConfigError(f"{path}: robots: expected a mapping of robot names")
    out = []
    for name, entry in robots.items():
        where = f"{path.name}: robots.{name}"
        try:
            check_robot_name(name)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with uri")
        uri = entry.get("uri")
        if not isinstance(uri, str) or not uri.startswith(URI_SCHEMES):
            raise ConfigError(f"{where}.uri: must start with {', '.join(URI_SCHEMES)}, got "
                              f"{uri!r}")
        pos = entry.get("initial_position", [0.0, 0.0, 0.0])
        if (not isinstance(pos, list) or len(pos) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           for v in pos)):
            raise ConfigError(f"{where}.initial_position: expected 3 numbers, got {pos!r}")
        enabled = entry.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}.enabled: expected true or false, got {enabled!r}")
        overrides = {k: v for k, v in entry.items() if k not in ROBOT_KEYS}
        link, extra = _link_config({**defaults, **overrides}, where)
        out.append(CrazyflieEntry(name, uri, tuple(float(v) for v in pos), enabled, link,
                                  **extra))
    if len({e.uri for e in out if e.enabled}) != sum(e.enabled for e in out):
        raise ConfigError(f"{path}: robots: two enabled robots share a uri")
    return out
