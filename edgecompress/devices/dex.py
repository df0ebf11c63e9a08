"""Reading a `.dex` file and checking it will load on the oldest phone the app supports: no `invoke-custom`
call sites, and every class it references is in the dex or the phone's framework (`check_dex`).
"""

from __future__ import annotations

import shutil
import struct
import zipfile
from pathlib import Path

from edgecompress.errors import EdgeCompressError


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def read_dex(data: bytes) -> dict:
    """Types, methods and class definitions of a dex file (format 035-039).

    Returns {"types": [descriptor], "methods": [(class, name)],
    "classes": {descriptor: {"super": descriptor, "interfaces": [...],
    "methods": {name}}}, "invoke_custom": count of call sites}.
    """
    if data[:4] != b"dex\n":
        raise EdgeCompressError("Not a dex file (bad magic).")
    (string_ids_size, string_ids_off, type_ids_size, type_ids_off, _proto_size, _proto_off, _field_size, _field_off,
     method_ids_size, method_ids_off, class_defs_size, class_defs_off) = struct.unpack_from("<12I", data, 0x38)

    def string(i):
        off = struct.unpack_from("<I", data, string_ids_off + 4 * i)[0]
        _, pos = _uleb(data, off)
        end = data.index(b"\0", pos)
        return data[pos:end].decode("utf-8", "replace")  # MUTF-8; fine for class and method names

    types = [string(struct.unpack_from("<I", data, type_ids_off + 4 * i)[0]) for i in range(type_ids_size)]
    methods = []
    for i in range(method_ids_size):
        cls, _proto, name = struct.unpack_from("<HHI", data, method_ids_off + 8 * i)
        methods.append((types[cls], string(name)))
    classes = {}
    for i in range(class_defs_size):
        (cls, _flags, sup, ifaces_off, _src, _ann, data_off, _static) = struct.unpack_from("<8I", data, class_defs_off + 32 * i)
        ifaces = []
        if ifaces_off:
            n = struct.unpack_from("<I", data, ifaces_off)[0]
            ifaces = [types[t] for t in struct.unpack_from(f"<{n}H", data, ifaces_off + 4)]
        names = set()
        if data_off:
            pos = data_off
            sf, pos = _uleb(data, pos)
            inf, pos = _uleb(data, pos)
            dm, pos = _uleb(data, pos)
            vm, pos = _uleb(data, pos)
            for _ in range(sf + inf):
                _, pos = _uleb(data, pos)
                _, pos = _uleb(data, pos)
            for count in (dm, vm):
                idx = 0
                for _ in range(count):
                    diff, pos = _uleb(data, pos)
                    idx += diff
                    _, pos = _uleb(data, pos)
                    _, pos = _uleb(data, pos)
                    names.add(methods[idx][1])
        classes[types[cls]] = {"super": types[sup] if sup != 0xFFFFFFFF else None, "interfaces": ifaces,
                               "methods": names}
    # call_site_ids live in the map list (type 0x0007); dex 035 has none.
    map_off = struct.unpack_from("<I", data, 0x34)[0]
    n = struct.unpack_from("<I", data, map_off)[0]
    call_sites = sum(size for kind, _, size, _ in (struct.unpack_from("<HHII", data, map_off + 4 + 12 * k) for k in range(n))
                     if kind == 0x0007)
    return {"types": types, "methods": methods, "classes": classes, "invoke_custom": call_sites}


# Android's core library has these JDK modules' packages (java.lang..., java.util.logging).
_JAVA_MODULES = ("java.base", "java.logging")
_OBJECT_METHODS = {"<init>", "equals", "hashCode", "toString", "getClass", "notify", "notifyAll", "wait", "clone",
                   "finalize"}


def framework_jars(chain: dict) -> list:
    """What a minSdk phone provides: android-all 7.0 and the JDK modules Android's core library covers."""
    return chain["android_min"] + [java_home() / "jmods" / f"{m}.jmod" for m in _JAVA_MODULES]


def java_home() -> Path:
    """The JDK behind `java` on PATH (its jmods stand in for the phone's java.* classes)."""
    return Path(shutil.which("java")).resolve().parents[1]


def _framework_classes(jars) -> set[str]:
    names = set()
    for jar in jars:
        with zipfile.ZipFile(jar) as z:
            for n in z.namelist():
                if n.endswith(".class"):
                    n = n[len("classes/"):] if n.startswith("classes/") else n  # .jmod layout
                    names.add("L" + n[:-len(".class")] + ";")
    return names


def check_dex(data: bytes, framework_jars) -> dict:
    """Fails unless the dex has no call sites and every referenced class, and every
    method called on a class of the app's own, is defined (in the dex or the framework).

    `framework_jars`: Android's classes at the app's minSdk (Robolectric's
    android-all 7.0) and the JDK's `java.base` and `java.logging` for
    `java.*`, which Android's core library provides (the JDK has more than a
    phone: java.* is checked for presence, not against API 24 exactly).
    """
    dex = read_dex(data)
    if dex["invoke_custom"]:
        raise EdgeCompressError(f"classes.dex has {dex['invoke_custom']} invoke-custom call site(s); minSdk 24 "
                                "phones cannot run them (backport the lambdas).")
    framework = _framework_classes(framework_jars)
    defined = dex["classes"]
    referenced = {t.lstrip("[") for t in dex["types"]}
    missing = sorted(t for t in referenced if t.startswith("L") and t not in defined and t not in framework)
    # Annotations that only the compiler reads are never loaded at run time.
    missing = [t for t in missing if not t.startswith(("Lorg/jetbrains/annotations/", "Ljavax/annotation/",
                                                        "Lorg/checkerframework/", "Ldalvik/annotation/",
                                                        "Landroidx/annotation/"))]
    if missing:
        raise EdgeCompressError(f"classes.dex references {len(missing)} class(es) neither it nor Android 7.0 defines: "
                                + ", ".join(missing[:20]))

    def has(cls, name):
        c = defined.get(cls)
        if c is None:  # a framework class: trusted for its own methods, except plain Object
            return cls != "Ljava/lang/Object;" or name in _OBJECT_METHODS
        if name in c["methods"]:
            return True
        return any(has(s, name) for s in [c["super"], *c["interfaces"]] if s)

    absent = sorted({f"{cls}->{name}" for cls, name in dex["methods"] if cls in defined and not has(cls, name)})
    if absent:
        raise EdgeCompressError(f"classes.dex calls {len(absent)} method(s) its own classes do not define: "
                                + ", ".join(absent[:20]))
    return {"classes": len(defined), "types": len(dex["types"]), "methods": len(dex["methods"])}
