"""`fathom convert`: a trained checkpoint → a serving folder."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("convert")
    def convert(
        src: str = typer.Option(..., "--src", help="Checkpoint folder, s3:// URI, or `embedded`."),
        out: Path = typer.Option(..., "--out", help="Serving folder to write."),
        dtype: str = typer.Option("bf16", "--dtype", help="bf16 | fp16 | fp32."),
        base: str = typer.Option(None, "--base", help="Base model of LoRA adapters (default: from adapter_config)."),
        yarn_factor: float = typer.Option(None, "--yarn-factor", help="YaRN RoPE factor to write (e.g. 2.0)."),
        original_max_pos: int = typer.Option(None, "--original-max-pos", help="Pre-YaRN context (e.g. 40960)."),
        upload: str = typer.Option(None, "--upload", help="Upload the result to this URI (s3://bucket/prefix)."),
        no_verify: bool = typer.Option(False, "--no-verify", help="Skip the reload + generate check."),
        force: bool = typer.Option(False, "--force", help="Convert even if OUT already holds this conversion."),
    ) -> None:
        """Convert a checkpoint (full or LoRA, TRL output folder) to safetensors + tokenizer + manifest."""
        from rich.console import Console

        from fathom.convert.convert import ConvertConfig, convert_checkpoint
        from fathom.errors import FathomError

        console = Console(stderr=True)
        try:
            cfg = ConvertConfig(src=src, out=out, dtype=dtype, base_model=base, yarn_factor=yarn_factor,
                                original_max_pos=original_max_pos, upload=upload, verify=not no_verify, force=force)
            with console.status(f"converting {src} ..."):
                result = convert_checkpoint(cfg)
        except (FathomError, ValueError) as exc:
            console.print(f"[red]convert failed:[/red] {exc}")
            raise typer.Exit(1) from exc
        m = result.manifest
        verb = "already converted" if result.skipped else "converted"
        console.print(f"[green]{verb}[/green] {m['source']} -> {result.out} ({m['dtype']}, {m['source_kind']}, "
                      f"{len(m['files'])} files, rope_scaling={m['rope_scaling']})")
        if m.get("verification"):
            console.print(f"verification: {m['verification']['prompt']!r} -> {m['verification']['output']!r}")
        if result.uploaded_to:
            console.print(f"uploaded to {result.uploaded_to}")
