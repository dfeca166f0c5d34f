"""``alignbook doctor``: what this machine offers, and whether the gpu profile runs here.

:func:`doctor_report` gathers the Python and package versions, JAX's backend and devices
(:func:`_doctor_jax`), the environment variables that steer them and, for every data set
the :data:`DOCTOR_PROFILE` profile reads, whether its files are present and match their
checksums; :func:`_cmd_doctor` prints it (or its JSON). It changes nothing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from alignbook import data_cli
from alignbook import pipeline as _book
from alignbook import results as _results


#: The profile ``alignbook doctor`` checks, and what it needs besides data: an accelerator.
DOCTOR_PROFILE = "gpu"
_DOCTOR_PACKAGES = ("jax", "jaxlib", "equinox", "optax", "jax-cuda12-plugin", "jax-cuda13-plugin")
_DOCTOR_ENV = ("JAX_PLATFORMS", "CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_PREALLOCATE",
               "XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_ALLOCATOR", "XLA_FLAGS",
               "JAX_ENABLE_X64", "ALIGNBOOK_DATA", "XDG_CACHE_HOME")


def _doctor_jax() -> dict[str, Any]:
    """JAX's backend, devices (memory where ``memory_stats()`` reports it) and x64 flag."""
    if "jax" not in sys.modules:
        # started in this process: do not take 75% of a GPU that a running build may use
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    try:
        import jax

        devices = jax.devices()
        backend = jax.default_backend()
        x64 = bool(jax.config.jax_enable_x64)
    except Exception as exc:  # a broken install or a plugin failing to initialise
        return {"backend": None, "devices": [], "x64": None, "error": f"{type(exc).__name__}: {exc}"}
    found = []
    for d in devices:
        entry: dict[str, Any] = {"id": d.id, "platform": d.platform, "kind": d.device_kind}
        try:
            stats = d.memory_stats() or {}
        except Exception:  # not every backend implements it
            stats = {}
        for key, name in (("bytes_limit", "memory_limit_bytes"), ("bytes_in_use", "memory_in_use_bytes")):
            if key in stats:
                entry[name] = int(stats[key])
        found.append(entry)
    return {"backend": backend, "devices": found, "x64": x64, "error": None}


def _doctor_datasets(root: Path | None) -> tuple[list[tuple[str, str | None]], str | None]:
    """The ``(data set, data_dir or None)`` pairs that the doctor profile's chapters read
    (their ``dataset`` / ``datasets`` / ``data_dir`` parameters), and a note when the book
    or the profile cannot be read (then every data set with files is listed)."""
    from alignlib import data as _ds

    try:
        book = _book.Book(root if root is not None else _results.project_root())
        profiles = _book.load_profiles(book)
        if DOCTOR_PROFILE not in profiles:
            raise _book.BookError(f"book/profiles.yml has no {DOCTOR_PROFILE!r} profile")
        pairs = data_cli.profile_datasets(book, DOCTOR_PROFILE, profiles)
        return [(name, data_dir) for name, data_dir in pairs if name in _ds.DATASETS], None
    except _book.BookError as exc:
        return [(name, None) for name in _ds.DATASETS], \
            f"{exc}; listing every data set read from files instead"


def _fetch_hint(name: str, missing: list[str], data_dir: str | None) -> str:
    """How to get the ``missing`` files of data set ``name``."""
    from alignlib import data as _ds

    command = _ds.download_command(name, _ds.cache_folder(name, data_dir))
    if not _ds.DATASETS[name].public_download:
        return (f"{_ds.DATASETS[name].note} Put {' and '.join(missing)} (from "
                f"{_ds.DATASETS[name].base_url}) in {_ds.cache_folder(name, data_dir)}; "
                f"`{command}` says how.")
    return command


def doctor_report(root: Path | None = None, *, verify: bool = True) -> dict[str, Any]:
    """What ``alignbook doctor`` prints, as a dict (``--json`` prints exactly this)."""
    import platform

    from alignlib import data as _ds

    environment = {k: os.environ[k] for k in _DOCTOR_ENV if k in os.environ}  # as given
    jax_info = _doctor_jax()
    pairs, note = _doctor_datasets(root)
    data = []
    for name, data_dir in pairs:
        checks = _ds.check_files(name, cache_dir=data_dir, verify=verify)
        bad = [c.filename for c in checks if not c.ok]
        data.append({
            "name": name, "title": _ds.DATASETS[name].title,
            "folder": str(_ds.cache_folder(name, data_dir)), "ok": not bad,
            "files": [{"filename": c.filename, "path": str(c.path), "status": c.status,
                       "detail": c.detail} for c in checks],
            "fetch": _fetch_hint(name, bad, data_dir) if bad else None,
        })
    accelerators = [d for d in jax_info["devices"] if d["platform"] != "cpu"]
    plugins = [p for p in ("jax-cuda12-plugin", "jax-cuda13-plugin") if _results._version(p)]
    reasons = []
    if not accelerators:
        why = (f"JAX failed to start ({jax_info['error']})" if jax_info["error"]
               else f"JAX's backend is {jax_info['backend']}")
        if plugins and not jax_info["error"]:
            why += f", and {' and '.join(plugins)} is installed but did not load (see JAX's warning)"
        elif not plugins:
            why += ", and no CUDA plugin is installed (pip install -e \".[gpu]\")"
        reasons.append(f"No GPU or TPU: {why}.")
    missing = [d["name"] for d in data if not d["ok"]]
    if missing:
        reasons.append(f"Data missing or bad: {', '.join(missing)} (see above).")
    if reasons:
        summary = f"{DOCTOR_PROFILE} profile: cannot run here. " + " ".join(reasons)
    else:
        kinds = sorted({d["kind"] for d in accelerators})
        summary = (f"{DOCTOR_PROFILE} profile: can run here ({len(accelerators)} x {', '.join(kinds)}; "
                   f"every data file present{'' if verify else ', checksums not checked'}).")
    return {
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "packages": {p: _results._version(p) for p in _DOCTOR_PACKAGES},
        "jax": jax_info,
        "environment": environment,
        # the folder that holds one folder per data set (cache_folder's own rule)
        "data": {"root": str(_ds.cache_folder("kmnist").parent), "verified": verify, "note": note,
                 "datasets": data},
        DOCTOR_PROFILE + "_profile": {"can_run": not reasons, "accelerator": bool(accelerators),
                                      "missing_data": missing, "reasons": reasons,
                                      "summary": summary},
    }


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _cmd_doctor(args) -> int:
    report = doctor_report(getattr(args, "root", None), verify=args.verify)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    jax_info, data = report["jax"], report["data"]
    print(f"Python      {report['python']['version']}  ({report['python']['executable']})")
    print("Packages    " + ", ".join(f"{p} {v}" for p, v in report["packages"].items()
                                     if v or p in ("jax", "jaxlib", "equinox", "optax")))
    if jax_info["error"]:
        print(f"JAX         failed to start: {jax_info['error']}")
    else:
        print(f"Backend     {jax_info['backend']}")
        for d in jax_info["devices"]:
            memory = ""
            if "memory_limit_bytes" in d:
                memory = f", memory for JAX {_gib(d['memory_limit_bytes'])}"
                if "memory_in_use_bytes" in d:
                    memory += f" ({_gib(d['memory_in_use_bytes'])} in use)"
            print(f"Device {d['id']:<4} {d['platform']}: {d['kind']}{memory}")
        print(f"64-bit      {'on' if jax_info['x64'] else 'off'} (jax_enable_x64; "
              "the theory chapter turns it on for itself)")
    env = report["environment"]
    print("Environment " + ("  ".join(f"{k}={v}" for k, v in env.items()) if env else
                            "none set of " + ", ".join(_DOCTOR_ENV)))
    print(f"Data cache  {data['root']}" + ("" if data["verified"] else "  (checksums not checked)"))
    if data["note"]:
        print(f"  note: {data['note']}")
    print(f"Data the {DOCTOR_PROFILE} profile reads:")
    for d in data["datasets"]:
        print(f"  {d['name']} ({d['title']}): {'present' if d['ok'] else 'NOT READY'}  in {d['folder']}")
        for f in d["files"]:
            print(f"    {f['filename']:<32} {f['status']}" + (f"  ({f['detail']})" if f["detail"] else ""))
        if d["fetch"]:
            print(f"    to fetch: {d['fetch']}")
    print(report[DOCTOR_PROFILE + "_profile"]["summary"])
    return 0
