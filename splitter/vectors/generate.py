#!/usr/bin/env python3
"""Generates the splitter's compatibility vectors from the written spec, with Python's hashlib
only (no Rust code involved). Run: python3 splitter/vectors/generate.py [OUT_DIR]

- bucketing.json: salt, tenant -> bucket (0..9999)
- decisions.json: a policy config, a tenant (or none) -> version, is_canary

Any port of the splitter (Go, TypeScript, ...) proves compatibility by reading these files.
"""
import hashlib
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def bucket(salt: str, tenant: str) -> int:
    digest = hashlib.sha256((salt + ":" + tenant).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 10000


def decide(config, tenant):
    """The decision rules of the spec, written independently of the Rust code."""
    if config is None:
        return {"version": "latest", "is_canary": False}
    stable = {"version": config["stable_version"], "is_canary": False}
    if tenant is None or tenant == "":
        return stable
    pin = config.get("overrides", {}).get(tenant)
    canary = config.get("canary_version")
    if pin == "stable":
        return stable
    if pin == "canary":
        return {"version": canary, "is_canary": True} if canary else stable
    if not canary:
        return stable
    if bucket(config["salt"], tenant) < config["canary_basis_points"]:
        return {"version": canary, "is_canary": True}
    return stable


def bucketing_cases():
    rng = random.Random(20261128)
    salts = ["payment-api", "search-api", "checkout", "payment-api:v2", "billing", "a", "x" * 256,
             "Ünïcødé-salt", "salt with spaces", "日本語"]
    fixed_tenants = ["tenant-123", "tenant-124", "acme-corp", "über-gmbh", "t-000001", "T-000001",
                     "a", " ", "tenant,with,commas", 'tenant"quoted"', "emoji-🚀", "中文租户",
                     "x" * 256, "tenant:colon", "-"]
    cases = []
    for salt in salts:
        for tenant in fixed_tenants:
            cases.append((salt, tenant))
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@"
    for _ in range(400):
        salt = rng.choice(salts[:6])
        n = rng.randint(1, 40)
        tenant = "".join(rng.choice(alphabet) for _ in range(n))
        cases.append((salt, tenant))
    for i in range(100):
        cases.append(("billing", f"t-{i:06d}"))
    return [{"salt": s, "tenant": t, "bucket": bucket(s, t)} for s, t in cases]


def decision_cases():
    base = {"policy_name": "payment-api", "stable_version": "v1", "canary_version": "v2",
            "salt": "payment-api", "canary_basis_points": 1250, "overrides": {}}
    tenants = [f"tenant-{i}" for i in range(100, 140)] + ["acme-corp", "über-gmbh"]
    cases = []

    def add(name, config, tenant):
        cases.append({"name": name, "config": config, "tenant": tenant,
                      "expected": decide(config, tenant)})

    add("no config -> latest", None, "tenant-123")
    add("no tenant -> stable", base, None)
    add("empty tenant -> stable", base, "")
    for bp in [0, 1, 1250, 5000, 9999, 10000]:
        for t in tenants:
            add(f"bucket at {bp}bp", dict(base, canary_basis_points=bp), t)
    no_canary = dict(base, canary_version=None, canary_basis_points=0)
    for t in tenants[:5]:
        add("no canary version -> stable", no_canary, t)
    pinned = dict(base, canary_basis_points=5000,
                  overrides={"tenant-100": "canary", "tenant-101": "stable", "acme-corp": "canary"})
    for t in ["tenant-100", "tenant-101", "acme-corp", "tenant-102"]:
        add("overrides win over the bucket", pinned, t)
    add("pin to canary without canary version -> stable",
        dict(no_canary, overrides={"tenant-100": "canary"}), "tenant-100")
    add("pin to stable at 100% -> stable", dict(pinned, canary_basis_points=10000), "tenant-101")
    add("pin to canary at 0% -> canary", dict(pinned, canary_basis_points=0), "tenant-100")
    salted = dict(base, salt="payment-api:v2", canary_basis_points=5000)
    for t in tenants[:10]:
        add("custom salt", salted, t)
    return cases


def write(name, data, out_dir):
    with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    import sys
    out_dir = sys.argv[1] if len(sys.argv) > 1 else HERE
    write("bucketing.json", {"spec": "bucket = first 8 bytes of SHA-256(salt + ':' + tenant), "
                                     "big-endian u64, mod 10000",
                             "cases": bucketing_cases()}, out_dir)
    write("decisions.json", {"spec": "canary iff override says canary (and a canary version "
                                     "exists), else bucket < canary_basis_points; no tenant -> "
                                     "stable; no config -> latest",
                             "cases": decision_cases()}, out_dir)
