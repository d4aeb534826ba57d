"""Quota usage and enforcement, answered as Nova (403 forbidden) and Cinder (413 overLimit) answer it."""

from __future__ import annotations

from typing import Any

from lablease.devcloud.errors import CloudError
from lablease.devcloud.state import Cloud


def compute_usage(cloud: Cloud, project_id: str) -> dict[str, int]:
    used = {"instances": 0, "cores": 0, "ram": 0}
    for s in cloud.servers.values():
        if s.project_id != project_id:
            continue
        flavor = cloud.flavor(s.flavor_id)
        used["instances"] += 1
        used["cores"] += flavor.vcpus if flavor else 0
        used["ram"] += flavor.ram if flavor else 0
    return used


def volume_usage(cloud: Cloud, project_id: str) -> dict[str, int]:
    vols = [v for v in cloud.volumes.values() if v.project_id == project_id]
    return {"volumes": len(vols), "gigabytes": sum(v.size for v in vols)}


def check_compute_quota(cloud: Cloud, project_id: str, flavor) -> None:
    q = cloud.config.quotas
    used = compute_usage(cloud, project_id)
    for resource, want, limit in (("instances", 1, q.instances), ("cores", flavor.vcpus, q.cores),
                                  ("ram", flavor.ram, q.ram)):
        if used[resource] + want > limit:
            raise CloudError(403, f"Quota exceeded for {resource}: Requested {want}, but already used "
                                  f"{used[resource]} of {limit} {resource}", "nova", kind="forbidden")


def check_volume_quota(cloud: Cloud, project_id: str, size: int, style: str = "cinder") -> None:
    q = cloud.config.quotas
    used = volume_usage(cloud, project_id)
    if used["volumes"] + 1 > q.volumes:
        raise CloudError(413, f"VolumeLimitExceeded: Maximum number of volumes allowed ({q.volumes}) exceeded "
                              "for quota 'volumes'.", style, kind="overLimit", extra={"retryAfter": "0"})
    if used["gigabytes"] + size > q.gigabytes:
        raise CloudError(413, f"VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed "
                              f"gigabytes quota. Requested {size}G, quota is {q.gigabytes}G and "
                              f"{used['gigabytes']}G has been consumed.", style, kind="overLimit",
                         extra={"retryAfter": "0"})


def nova_limits(cloud: Cloud, project_id: str, user_id: str) -> dict[str, Any]:
    q = cloud.config.quotas
    used = compute_usage(cloud, project_id)
    groups = [g for g in cloud.security_groups.values() if g.project_id == project_id]
    return {"limits": {"rate": [], "absolute": {
        "maxTotalInstances": q.instances, "maxTotalCores": q.cores, "maxTotalRAMSize": q.ram,
        "maxServerMeta": 128, "maxImageMeta": 128, "maxPersonality": 5, "maxPersonalitySize": 10240,
        "maxTotalKeypairs": q.key_pairs, "maxSecurityGroups": 10, "maxSecurityGroupRules": 20,
        "maxServerGroups": 10, "maxServerGroupMembers": 10, "maxTotalFloatingIps": q.floating_ips,
        "totalInstancesUsed": used["instances"], "totalCoresUsed": used["cores"], "totalRAMUsed": used["ram"],
        "totalSecurityGroupsUsed": len(groups), "totalServerGroupsUsed": 0,
        "totalFloatingIpsUsed": sum(1 for f in cloud.floating_ips.values() if f.project_id == project_id),
    }}}


def cinder_limits(cloud: Cloud, project_id: str) -> dict[str, Any]:
    q = cloud.config.quotas
    used = volume_usage(cloud, project_id)
    return {"limits": {"rate": [], "absolute": {
        "maxTotalVolumes": q.volumes, "maxTotalVolumeGigabytes": q.gigabytes, "maxTotalSnapshots": 10,
        "maxTotalBackups": 10, "maxTotalBackupGigabytes": 1000,
        "totalVolumesUsed": used["volumes"], "totalGigabytesUsed": used["gigabytes"],
        "totalSnapshotsUsed": 0, "totalBackupsUsed": 0, "totalBackupGigabytesUsed": 0,
    }}}
