"""The official Kubernetes Python client (`kubernetes`) against a running `sectl serve`.

Run by tests/python_client.rs as `python3 tests/py/k8s_client.py KUBECONFIG`, with a
server whose store holds the tests' SITE plus vm-a (env=prod), vm-b (env=dev) and
vm-c (no env). Every check that fails prints what was expected and what came, and the
script exits 1; a missing `kubernetes` module exits 3 saying what to install.
"""

import sys
import threading
import time

try:
    from kubernetes import client, config, watch
    from kubernetes.client.rest import ApiException
except ImportError as e:  # pragma: no cover - the message is the point
    print(f"the Python package `kubernetes` is missing ({e}): pip install kubernetes", file=sys.stderr)
    sys.exit(3)

G, V, P = "sectl.io", "v1alpha1", "vmdefinitions"


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def names(lst):
    return sorted(o["metadata"]["name"] for o in lst["items"])


def vm(name, labels=None):
    return {
        "apiVersion": f"{G}/{V}",
        "kind": "VMDefinition",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"vmName": name.upper().replace("-", ""), "serverUnit": "ABGSE501", "memoryMiB": 1024},
    }


def main():
    config.load_kube_config(config_file=sys.argv[1])
    api = client.CustomObjectsApi()

    # A typed list.
    everything = api.list_cluster_custom_object(G, V, P)
    check(everything["kind"] == "VMDefinitionList", f"list kind: {everything['kind']!r}")
    check(everything["apiVersion"] == f"{G}/{V}", f"list apiVersion: {everything['apiVersion']!r}")
    all_names = names(everything)
    check(all_names == ["vm-a", "vm-b", "vm-c", "vm12prod"], f"all VMs: {all_names}")

    # Label selectors.
    for sel, want in [
        ("env=prod", ["vm-a"]),
        ("env!=prod", ["vm-b", "vm-c", "vm12prod"]),
        ("env in (prod,dev)", ["vm-a", "vm-b"]),
        ("env", ["vm-a", "vm-b"]),
        ("!env", ["vm-c", "vm12prod"]),
        ("app=prod,!env", ["vm12prod"]),
    ]:
        got = names(api.list_cluster_custom_object(G, V, P, label_selector=sel))
        check(got == want, f"label_selector {sel!r}: want {want}, got {got}")
    # Field selectors.
    got = names(api.list_cluster_custom_object(G, V, P, field_selector="metadata.name=vm-b"))
    check(got == ["vm-b"], f"field_selector metadata.name=vm-b: {got}")
    got = names(api.list_cluster_custom_object(G, V, P, field_selector="metadata.name!=vm-b", label_selector="env"))
    check(got == ["vm-a"], f"field and label selector together: {got}")
    try:
        api.list_cluster_custom_object(G, V, P, field_selector="spec.nosuchfield=1")
        check(False, "an unknown field selector was accepted")
    except ApiException as e:
        check(e.status == 400, f"unknown field selector: status {e.status}")

    # Watch from resource_version 0: ADDED for the current state only, then changes.
    events = []
    current = set(all_names)

    def change_when_listed():
        deadline = time.time() + 20
        while len(events) < len(current) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        api.patch_cluster_custom_object(G, V, P, "vm-c", {"metadata": {"labels": {"watched": "yes"}}})

    t = threading.Thread(target=change_when_listed)
    t.start()
    w = watch.Watch()
    for ev in w.stream(api.list_cluster_custom_object, G, V, P, resource_version="0", timeout_seconds=30):
        events.append((ev["type"], ev["object"]["metadata"]["name"]))
        if ev["type"] == "MODIFIED" and ev["object"]["metadata"]["name"] == "vm-c":
            w.stop()
    t.join()
    initial = events[: len(current)]
    check(sorted(n for _, n in initial) == sorted(current), f"initial events name the current objects: {events}")
    check(all(t == "ADDED" for t, _ in initial), f"the current state comes as ADDED: {events}")
    rest = events[len(current):]
    check(rest and rest[-1] == ("MODIFIED", "vm-c"), f"then the change: {events}")
    check(all(n == "vm-c" for _, n in rest), f"nothing but the change after the current state: {events}")

    # timeout_seconds ends the stream (the client does not retry then).
    rv = api.list_cluster_custom_object(G, V, P)["metadata"]["resourceVersion"]
    started = time.time()
    late = list(watch.Watch().stream(api.list_cluster_custom_object, G, V, P, resource_version=rv, timeout_seconds=2))
    took = time.time() - started
    check(late == [], f"no change, no event: {late}")
    check(1.5 <= took < 15, f"timeout_seconds=2 ended the stream after {took:.1f}s")

    # Patch (merge): the change is there, the rest kept.
    before = api.get_cluster_custom_object(G, V, P, "vm-a")
    got = api.patch_cluster_custom_object(G, V, P, "vm-a", {"spec": {"memoryMiB": 2048}, "metadata": {"labels": {"tier": "1"}}})
    check(got["spec"]["memoryMiB"] == 2048, f"patched memoryMiB: {got['spec']}")
    check(got["metadata"]["labels"] == {"env": "prod", "tier": "1"}, f"merged labels: {got['metadata']['labels']}")
    check(got["spec"]["vmName"] == before["spec"]["vmName"], "the rest of spec kept")
    check(int(got["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"]), "new resourceVersion")
    again = api.get_cluster_custom_object(G, V, P, "vm-a")
    check(again["spec"]["memoryMiB"] == 2048, "the patch was stored")
    # Removing a label with null.
    got = api.patch_cluster_custom_object(G, V, P, "vm-a", {"metadata": {"labels": {"tier": None}}})
    check(got["metadata"]["labels"] == {"env": "prod"}, f"null removes: {got['metadata']['labels']}")

    # dry_run='All': create and delete answer as if done, and leave nothing.
    rv_before = api.list_cluster_custom_object(G, V, P)["metadata"]["resourceVersion"]
    made = api.create_cluster_custom_object(G, V, P, vm("vm-dry", {"env": "test"}), dry_run="All")
    check(made["metadata"]["name"] == "vm-dry", f"dry-run create answers with the object: {made['metadata']}")
    try:
        api.get_cluster_custom_object(G, V, P, "vm-dry")
        check(False, "dry-run create wrote the object")
    except ApiException as e:
        check(e.status == 404, f"dry-run create: get gives {e.status}")
    gone = api.delete_cluster_custom_object(G, V, P, "vm-b", dry_run="All")
    check(gone is not None, "dry-run delete answers")
    check(api.get_cluster_custom_object(G, V, P, "vm-b")["metadata"]["name"] == "vm-b", "dry-run delete left vm-b")
    patched = api.patch_cluster_custom_object(G, V, P, "vm-b", {"spec": {"memoryMiB": 4096}}, dry_run="All")
    check(patched["spec"]["memoryMiB"] == 4096, "dry-run patch answers with the would-be object")
    check(api.get_cluster_custom_object(G, V, P, "vm-b")["spec"]["memoryMiB"] == 1024, "dry-run patch left vm-b")
    rv_after = api.list_cluster_custom_object(G, V, P)["metadata"]["resourceVersion"]
    check(names(api.list_cluster_custom_object(G, V, P)) == all_names, "dry runs added or removed nothing")
    # (The controller may move the store's resourceVersion meanwhile; the objects are what count.)
    check(int(rv_after) >= int(rv_before), f"resourceVersion went back: {rv_before} -> {rv_after}")

    # Errors are kind: Status, so the client raises with the server's reason.
    try:
        api.get_cluster_custom_object(G, V, P, "nosuchvm")
        check(False, "a missing object was found")
    except ApiException as e:
        check(e.status == 404 and "not found" in e.body, f"missing object: {e.status} {e.body}")
    try:
        api.list_cluster_custom_object(G, V, P, label_selector="env=prod,,")
        check(False, "a malformed label selector was accepted")
    except ApiException as e:
        check(e.status == 400, f"malformed label selector: {e.status}")
    print("ok: typed list, label and field selectors, watch from 0 and timeout_seconds, merge patch, dry_run=All")


if __name__ == "__main__":
    main()
