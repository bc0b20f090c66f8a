"""`prunec targets`: the targets (targets/*.toml) and whether this machine has their toolchain."""
from __future__ import annotations

import json

import click


@click.command("targets")
@click.option("--json", "as_json", is_flag=True, help="print the table as JSON")
def targets_cmd(as_json):
    """List the targets, their kernel ISAs, runner and board memory, and whether their tools are installed."""
    from . import targets

    rows = []
    for t in targets.all_targets().values():
        missing = t.missing_tools()
        rows.append({
            "name": t.name, "description": t.description, "isa": list(t.isa), "cc": t.cc, "runner": t.runner,
            "machine": t.extra.get("machine"), "emulator": t.extra.get("emulator"),
            "flash_bytes": t.flash_bytes, "ram_bytes": t.ram_bytes, "installed": not missing,
            "missing": [{"tool": exe, "package": None if pkg == "?" else pkg} for exe, pkg in missing],
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    w = max(len(r["name"]) for r in rows)
    iw = max([len("kernel ISAs")] + [len(",".join(r["isa"])) for r in rows])
    click.echo(f"{'target':<{w}}  {'toolchain':<9}  {'runner':<11}  {'kernel ISAs':<{iw}}  {'flash/RAM':<15}  description")
    for r in rows:
        mem = "-" if not r["flash_bytes"] else f"{r['flash_bytes'] // 1024}K/{r['ram_bytes'] // 1024}K"
        state = "ok" if r["installed"] else "MISSING"
        click.echo(f"{r['name']:<{w}}  {state:<9}  {r['runner']:<11}  {','.join(r['isa']):<{iw}}  {mem:<15}  {r['description']}")
        for m in r["missing"]:
            fix = f"apt-get install {m['package']}" if m["package"] else "its target file names no Debian package for it"
            click.echo(f"{'':<{w}}    needs {m['tool']}: {fix}")


@click.command("size")
@click.argument("build_dir", type=click.Path(exists=True, file_okay=False))
def size_cmd(build_dir):
    """Build BUILD_DIR's libNAME.a with its target's flags (`make -C BUILD_DIR`) and record its section sizes
    (text, rodata, data, bss; `<target size tool> -A`), on bare-metal targets those of what a firmware linked with
    --gc-sections keeps of it, external symbols and the worst-case stack of NAME_run (from GCC's call graph) in
    manifest.json under "size"."""
    from . import runners
    from .verify import load_manifest

    m = load_manifest(build_dir)
    s = runners.record_size(build_dir, m, m["target"])
    lib = s["library"]
    click.echo(f"lib{m['name']}.a for {m['target']}: text {lib['text']:,}  rodata {lib['rodata']:,}  data {lib['data']:,}  "
               f"bss {lib['bss']:,} bytes; flash {lib['flash']:,}, RAM {lib['ram']:,} (with the {m['arena_bytes']:,}-byte arena)")
    ln = s.get("linked")
    if ln:
        click.echo(f"linked with --gc-sections from {m['name']}_run (what firmware keeps, libm and libgcc included): "
                   f"text {ln['text']:,}  rodata {ln['rodata']:,}  data {ln['data']:,}  bss {ln['bss']:,} bytes; "
                   f"flash {ln['flash']:,}")
    st = s.get("stack") or {}
    if st.get("measured"):
        chain = " > ".join(f"{f['function']} {f['frame_bytes']:,}" for f in st["path"])
        click.echo(f"stack of {m['name']}_run: {'' if st['bounded'] else 'at least '}{st['bytes']:,} bytes below its caller "
                   f"({chain}); RAM with it {lib['ram_with_stack']:,}")
        if not st["bounded"]:
            click.echo("  not a bound: " + "; ".join(st["unbounded_because"]))
        if st["external_calls"]:
            click.echo("  not counted, outside the build: " + ", ".join(st["external_calls"]))
    elif st:
        click.echo(f"stack not measured: {st.get('reason')}")
    if s.get("external_symbols") is not None:
        click.echo("external symbols: " + (", ".join(s["external_symbols"]) or "none"))


COMMANDS = [targets_cmd, size_cmd]
