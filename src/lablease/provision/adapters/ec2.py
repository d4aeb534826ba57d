"""The EC2 adapter: libcloud's stock ``EC2NodeDriver``, one call per operation.

``driver_args`` go to the driver unchanged (``key``, ``secret``, ``region``; ``host``, ``port`` and
``secure`` for a private endpoint); only ``signature_version`` defaults to 4, which every region
takes (libcloud signs some regions with version 2 unless told). The driver is never patched or
subclassed. Three requests are sent through the driver's own signed connection instead of its
helpers, each for a reason:

- DescribeInstances, filtered to lablease's instances that are not terminated, and without the
  DescribeAddresses libcloud's ``list_nodes`` adds to every listing (lablease allocates no
  Elastic IP; an instance's public address is in DescribeInstances already);
- DescribeVolumes, filtered the same way and paginated;
- CreateVolume with its tags in a TagSpecification: libcloud's ``create_volume`` tags the volume
  in a second request (CreateTags), so a lost answer or a crash between the two would leave an
  untagged volume that neither the rollback nor the reconciler could ever find.

RunInstances carries a ClientToken made from the attempt id (EC2's idempotency: a repeated
request with that token makes no second instance), and its tags in its TagSpecification (libcloud
does this), so an instance is never untagged either. Instances that are shutting down or
terminated are gone as far as the engine is concerned; EC2 keeps listing terminated ones for an
hour. Like the OpenStack adapter, each thread uses its own driver (libcloud's connection keeps the
last response and is not thread-safe).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from typing import Any, Callable

from libcloud.common.exceptions import BaseHTTPError
from libcloud.compute.base import Node, StorageVolume
from libcloud.compute.drivers.ec2 import NAMESPACE
from libcloud.compute.providers import get_driver
from libcloud.compute.types import Provider
from libcloud.utils.xml import findall, findtext, fixxpath

from lablease.config.ec2 import EC2Options
from lablease.config.lab import ProviderConfig
from lablease.provision.adapters.base import (
    CloudAdapter,
    ErrorInfo,
    Image,
    Network,
    SecurityGroup,
    Server,
    ServerSpec,
    Size,
    Volume,
)
from lablease.provision.adapters.ec2_errors import NOT_FOUND_CODES, EC2ConfigError, classify_ec2_error, error_code
from lablease.provision.adapters.ec2_recent import RecentlyMade
from lablease.provision.models import TAG_ATTEMPT, TAG_LAB

log = logging.getLogger(__name__)

# EC2 instance states -> the engine's. Shutting down and terminated are gone: nothing can stop them.
_STATES = {"pending": "pending", "running": "running", "stopping": "error", "stopped": "error",
           "shutting-down": "deleted", "terminated": "deleted"}
_LIVE = ["pending", "running", "stopping", "stopped"]
# The root EBS volume is sized at launch, so every instance type fits any disk hint up to EBS's maximum.
ROOT_DISK_MAX = 16384
# Device names for attached EBS volumes: /dev/sdf../dev/sdz first (AWS's recommended range), then sdb..sde.
_LETTERS = "fghijklmnopqrstuvwxyzbcde"
_MAX_PAGES = 100
_ZONES_KEPT = 4096


def device_for(index: int) -> str:
    """The device name of a node's ``index``-th volume (``<name>_<index>``): /dev/sdf, /dev/sdg, ..."""
    if index < len(_LETTERS):
        return f"/dev/sd{_LETTERS[index]}"
    return f"/dev/xvdb{chr(ord('a') + index - len(_LETTERS))}"


def volume_index(name: str) -> int:
    """The ``<i>`` of a volume named ``<node>_<i>`` (0 when the name has none)."""
    match = re.search(r"_(\d+)$", name or "")
    return int(match.group(1)) if match else 0


def client_token(*parts: str) -> str:
    """An EC2 ClientToken (at most 64 ASCII characters) that is the same for the same attempt and resource."""
    return "lablease-" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]


def wildcard(pattern: str) -> re.Pattern[str]:
    """EC2's name filter wildcards (``*`` any run, ``?`` one character) as a regular expression."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + r"\Z")


class EC2Adapter(CloudAdapter):
    def __init__(self, provider: ProviderConfig, token_cache: Any = None):  # token_cache: EC2 signs each request
        self.provider = provider
        self.options = provider.ec2 or EC2Options()
        args = dict(provider.driver_args)
        self._key = str(args.pop("key"))
        self._secret = str(args.pop("secret"))
        args["signature_version"] = str(args.get("signature_version") or "4")
        args.setdefault("timeout", int(provider.api_timeout))
        self._args = args
        self._local = threading.local()
        self._lock = threading.Lock()
        self._zones: dict[str, str] = {}    # attempt id -> availability zone of its instance
        self._devices: dict[str, str] = {}  # volume id -> the device it is attached as
        self._subnet: Any = None
        self._checked = False
        self._recent_servers: RecentlyMade[Server] = RecentlyMade()  # EC2 is eventually consistent (ec2_recent)
        self._recent_volumes: RecentlyMade[Volume] = RecentlyMade()

    def __repr__(self) -> str:  # never show driver_args: they hold the secret key
        return f"EC2Adapter(region={self.region!r}, host={self._args.get('host')!r})"

    @property
    def region(self) -> str:
        return str(self._args.get("region", "us-east-1"))

    def _driver(self) -> Any:
        driver = getattr(self._local, "driver", None)
        if driver is None:
            driver = get_driver(Provider.EC2)(self._key, self._secret, **self._args)
            self._local.driver = driver
        return driver

    def authenticate(self) -> None:
        """EC2 signs every request, so there is no token: the first call checks the credentials once."""
        if not self._checked:
            self._driver().ex_list_availability_zones()
            self._checked = True

    def ping(self) -> None:
        """list_sizes reads libcloud's tables without a request: ask EC2 something cheap instead."""
        self._driver().ex_list_availability_zones()

    def account(self) -> str:
        where = self._args.get("host") or "AWS"
        return f"access key id ending {self._key[-4:]!r}, region {self.region}, at {where}"

    # -- listings ---------------------------------------------------------------------------

    def list_images(self) -> list[Image]:
        """Per "<os>-<version>" of ``ec2.ami_name_patterns``, the available AMIs of ``ec2.ami_owners`` whose name
        matches, newest (CreationDate) first; one DescribeImages per owner."""
        patterns = self.options.ami_name_patterns
        found: dict[str, Any] = {}
        for owner in self.options.ami_owners:
            for image in self._driver().list_images(
                    ex_owner=owner, ex_filters={"name": sorted(set(patterns.values())), "state": "available"}):
                found[image.id] = image
        images = []
        for os_key, pattern in sorted(patterns.items()):
            regex = wildcard(pattern)
            matching = [i for i in found.values() if regex.match(i.name or "")]
            matching.sort(key=lambda i: str(i.extra.get("creation_date") or ""), reverse=True)
            images += [Image(i.id, i.name or i.id, raw=i, os=os_key) for i in matching]
        return images

    def list_sizes(self) -> list[Size]:
        """The region's instance types (libcloud's tables: no request); the root disk is sized at launch."""
        sizes = []
        for s in self._driver().list_sizes():
            vcpus = str((s.extra or {}).get("vcpu") or "0")
            sizes.append(Size(s.id, s.name or s.id, int(s.ram or 0), ROOT_DISK_MAX,
                              int(vcpus) if vcpus.isdigit() else 0, raw=s))
        return sizes

    def list_networks(self) -> list[Network]:
        """The subnet of ``ec2.subnet`` (by id or Name tag), or none: EC2 then uses the default VPC's."""
        subnet = self._find_subnet()
        return [] if subnet is None else [Network(subnet.id, subnet.name or subnet.id, raw=subnet)]

    def _find_subnet(self) -> Any:
        wanted = self.options.subnet
        if wanted is None:
            return None
        if self._subnet is not None:
            return self._subnet
        by = {"subnet-id": wanted} if wanted.startswith("subnet-") else {"tag:Name": wanted}
        found = self._driver().ex_list_subnets(filters=by)
        if len(found) != 1:
            problem = "does not exist" if not found else f"is ambiguous ({len(found)} subnets have that Name tag)"
            raise EC2ConfigError(f"ec2.subnet {wanted!r} {problem} in region {self.region}; give a subnet id "
                                 "(subnet-...) or a unique Name tag")
        self._subnet = found[0]
        return self._subnet

    def list_security_groups(self) -> list[SecurityGroup]:
        """Security groups (of the subnet's VPC when ``ec2.subnet`` is set: group names are unique per VPC)."""
        subnet = self._find_subnet()
        vpc = (subnet.extra or {}).get("vpc_id") if subnet is not None else None
        groups = self._driver().ex_get_security_groups(filters={"vpc-id": vpc} if vpc else None)
        return [SecurityGroup(g.id, g.name or g.id, raw=g) for g in groups]

    # -- servers ------------------------------------------------------------------------------

    @staticmethod
    def _server(node: Any) -> Server:
        extra = node.extra or {}
        tags = dict(extra.get("tags") or {})
        state = _STATES.get(str(extra.get("status") or ""), "other")
        fault = (extra.get("reason") or f"instance {extra.get('status')}") if state == "error" else None
        return Server(id=node.id, name=tags.get("Name") or node.name or node.id, state=state,
                      public_ips=[ip for ip in node.public_ips or [] if ip], private_ips=[ip for ip in
                                                                          node.private_ips or [] if ip],
                      metadata=tags, fault=fault, raw=node)

    def create_server(self, spec: ServerSpec) -> Server:
        attempt = spec.metadata.get(TAG_ATTEMPT, "")
        extra: dict[str, Any] = {}
        subnet = spec.networks[0].raw if spec.networks else None
        if subnet is not None:
            extra["ex_subnet"] = subnet
            if spec.security_groups:
                extra["ex_security_group_ids"] = [g.id for g in spec.security_groups]
            public = self.options.assign_public_ip
            extra["ex_assign_public_ip"] = self.provider.ssh_interface == "public_ips" if public is None else public
        elif spec.security_groups:
            extra["ex_security_groups"] = [g.name for g in spec.security_groups]
        if self.options.key_pair:
            extra["ex_keyname"] = self.options.key_pair
        root = self._root_mapping(spec.image, spec.root_disk)
        if root:
            extra["ex_blockdevicemappings"] = root
        node = self._driver().create_node(
            name=spec.name, size=spec.size.raw, image=spec.image.raw, ex_userdata=spec.userdata,
            ex_metadata=spec.metadata, ex_clienttoken=client_token(spec.name, attempt), **extra)
        zone = (node.extra or {}).get("availability")
        if zone and attempt:
            self._remember_zone(attempt, str(zone))
        server = self._server(node)
        self._recent_servers.add(server)
        return server

    def _root_mapping(self, image: Image, disk: int) -> list[dict[str, Any]] | None:
        """The root volume at ``disk`` GB when the AMI's is smaller (EC2 refuses one smaller than its snapshot)."""
        extra = getattr(image.raw, "extra", None) or {}
        # libcloud keeps no rootDeviceName; the AMI's root is its mapping with an EBS snapshot.
        root = next((m.get("device_name") for m in extra.get("block_device_mapping") or []
                     if (m.get("ebs") or {}).get("snapshot_id")), None)
        if not root or disk <= 0:
            return None
        current = [(m.get("ebs") or {}).get("volume_size") for m in extra.get("block_device_mapping") or []
                   if m.get("device_name") == root]
        if current and current[0] and int(current[0]) >= disk:
            return None
        return [{"DeviceName": root, "Ebs": {"VolumeSize": disk, "VolumeType": self.options.volume_type,
                                             "DeleteOnTermination": "true"}}]

    def _remember_zone(self, attempt: str, zone: str) -> None:
        with self._lock:
            if len(self._zones) >= _ZONES_KEPT:
                self._zones.pop(next(iter(self._zones)))
            self._zones[attempt] = zone

    def _describe(self, action: str, params: dict[str, str], convert: Callable[[Any, Any], list]) -> list:
        """One Describe* call, every page of it (``convert`` turns a page into libcloud objects)."""
        driver, found, token = self._driver(), [], None
        for _ in range(_MAX_PAGES):
            page = {"Action": action, **params, **({"NextToken": token} if token else {})}
            elem = driver.connection.request(driver.path, params=page).object
            found += convert(driver, elem)
            token = findtext(element=elem, xpath="nextToken", namespace=NAMESPACE)
            if not token:
                break
        return found

    def _instances(self, params: dict[str, str]) -> list[Server]:
        def convert(driver: Any, elem: Any) -> list:
            return [n for rs in findall(element=elem, xpath="reservationSet/item", namespace=NAMESPACE)
                    for n in driver._to_nodes(rs, "instancesSet/item")]

        servers = [self._server(n) for n in self._describe("DescribeInstances", params, convert)]
        return [s for s in servers if s.state != "deleted"]

    def get_server(self, server_id: str) -> Server | None:
        try:
            found = self._instances({"InstanceId.1": server_id})
        except BaseHTTPError as exc:
            if NOT_FOUND_CODES.match(error_code(exc)):
                return self._recent_servers.get(server_id)
            raise
        if found:
            self._recent_servers.drop(server_id)
        return found[0] if found else self._recent_servers.get(server_id)

    def list_servers(self) -> list[Server]:
        """lablease's instances (tagged lablease-lab) that are not shutting down or terminated."""
        driver = self._driver()
        listed = self._instances(driver._build_filters({"tag-key": TAG_LAB, "instance-state-name": list(_LIVE)}))
        return self._recent_servers.complete(listed)

    def console_output(self, server_id: str) -> str | None:
        driver = self._driver()  # GetConsoleOutput: the instance's serial console (decoded), None while it has none
        return driver.ex_get_console_output(Node(server_id, None, None, [], [], driver)).get("output")

    def delete_server(self, server_id: str) -> None:
        self._recent_servers.drop(server_id)
        driver = self._driver()
        self._ignore_gone(lambda: driver.destroy_node(Node(server_id, None, None, [], [], driver)))

    @staticmethod
    def _ignore_gone(call: Callable[[], object], also: tuple[str, ...] = ()) -> None:
        try:
            call()
        except BaseHTTPError as exc:
            code = error_code(exc)
            if not (NOT_FOUND_CODES.match(code) or code in also):
                raise

    # -- volumes ------------------------------------------------------------------------------

    @staticmethod
    def _volume(vol: Any) -> Volume:
        extra = vol.extra or {}
        tags = dict(extra.get("tags") or {})
        status = str(extra.get("state") or "other")
        attachment = str(extra.get("attachment_status") or "")
        instance = extra.get("instance_id")
        state = attachment if attachment in ("attaching", "detaching") else status
        attached = [str(instance)] if instance and attachment in ("attaching", "attached") else []
        return Volume(id=vol.id, name=tags.get("Name") or vol.name or vol.id, state=state, size=int(vol.size or 0),
                      attached_to=attached, metadata=tags, raw=vol)

    def _zone_of(self, attempt: str) -> str:
        """The availability zone of the attempt's instance: volumes must be made where it runs."""
        with self._lock:
            zone = self._zones.get(attempt)
        if zone:
            return zone
        driver = self._driver()
        found = self._instances(driver._build_filters({f"tag:{TAG_ATTEMPT}": attempt, "instance-state-name": _LIVE}))
        zone = next((str(s.raw.extra.get("availability")) for s in found if s.raw.extra.get("availability")), None)
        if zone is None:
            raise EC2ConfigError(f"no instance of attempt {attempt} to put its volumes beside (volumes are made "
                                 "in the availability zone of their instance)")
        self._remember_zone(attempt, zone)
        return zone

    def create_volume(self, name: str, size: int, metadata: dict[str, str]) -> Volume:
        attempt = metadata.get(TAG_ATTEMPT, "")
        tags = {"Name": name, **metadata}
        params = {"Action": "CreateVolume", "Size": str(size), "AvailabilityZone": self._zone_of(attempt),
                  "VolumeType": self.options.volume_type, "ClientToken": client_token(name, attempt),
                  "TagSpecification.1.ResourceType": "volume"}
        for i, (key, value) in enumerate(tags.items(), start=1):
            params[f"TagSpecification.1.Tag.{i}.Key"] = key
            params[f"TagSpecification.1.Tag.{i}.Value"] = value
        driver = self._driver()
        vol = driver._to_volume(driver.connection.request(driver.path, params=params).object, name=name)
        vol.extra["tags"] = {**tags, **(vol.extra.get("tags") or {})}
        with self._lock:
            self._devices[vol.id] = device_for(volume_index(name))
        volume = self._volume(vol)
        self._recent_volumes.add(volume)
        return volume

    def _volumes(self, filters: dict[str, Any]) -> list[Volume]:
        driver = self._driver()

        def convert(drv: Any, elem: Any) -> list:
            return [drv._to_volume(el) for el in elem.findall(fixxpath(xpath="volumeSet/item", namespace=NAMESPACE))]

        volumes = [self._volume(v) for v in self._describe("DescribeVolumes", driver._build_filters(filters), convert)]
        return [v for v in volumes if v.state != "deleted"]

    def get_volume(self, volume_id: str) -> Volume | None:
        found = self._volumes({"volume-id": volume_id})
        return found[0] if found else self._recent_volumes.get(volume_id)

    def list_volumes(self) -> list[Volume]:
        """lablease's volumes (tagged lablease-lab) that are not deleted."""
        return self._recent_volumes.complete(self._volumes({"tag-key": TAG_LAB}))

    def attach_volume(self, server_id: str, volume_id: str) -> None:
        with self._lock:
            device = self._devices.pop(volume_id, None)
        if device is None:  # made by another process or adopted: its name says its index
            volume = self.get_volume(volume_id)
            device = device_for(volume_index(volume.name if volume else ""))
        driver = self._driver()
        driver.attach_volume(Node(server_id, None, None, [], [], driver), StorageVolume(volume_id, None, 0, driver),
                             device)

    def detach_volume(self, volume: Volume) -> None:
        driver = self._driver()
        # IncorrectState: the volume is no longer attached (detached meanwhile): nothing left to do.
        self._ignore_gone(lambda: driver.detach_volume(StorageVolume(volume.id, None, 0, driver)),
                          also=("IncorrectState",))

    def delete_volume(self, volume_id: str) -> None:
        self._recent_volumes.drop(volume_id)
        driver = self._driver()
        self._ignore_gone(lambda: driver.destroy_volume(StorageVolume(volume_id, None, 0, driver)))

    # -- errors ---------------------------------------------------------------------------------

    def classify(self, exc: BaseException) -> ErrorInfo:
        return classify_ec2_error(exc)
