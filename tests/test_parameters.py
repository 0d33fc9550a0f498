"""The processing parameters are declared once (ProcessParams); the CLI flags and the Airflow
trigger form are generated from that declaration and must agree with it, field by field."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from vigil.config import ProcessParams, declarations, declared
from vigil.errors import ParameterError


def _cli_actions(cls=ProcessParams) -> dict[str, argparse.Action]:
    from vigil.cli import add_processing_flags

    parser = argparse.ArgumentParser()
    add_processing_flags(parser, cls)
    return {a.dest: a for a in parser._actions if a.dest != "help"}


def _form(cls=ProcessParams) -> dict:
    from vigil.orchestration.trigger import processing_form

    return {name: (param.value, param.schema) for name, param in processing_form(cls).items()}


def test_every_parameter_is_on_all_three_surfaces_with_the_same_default():
    fields = {d.name: d.default for d in declarations(ProcessParams)}
    cli = {name: action.default for name, action in _cli_actions().items()}
    form = {name: value for name, (value, _) in _form().items()}
    assert cli == fields
    assert form == fields
    assert ProcessParams().to_dict() == fields


def test_the_form_and_the_cli_carry_the_declared_bounds_and_choices():
    form, cli = _form(), _cli_actions()
    for d in declarations(ProcessParams):
        schema = form[d.name][1]
        low_key = "exclusiveMinimum" if d.meta["exclusive_minimum"] else "minimum"
        assert schema.get(low_key) == d.meta["minimum"], d.name
        assert schema.get("maximum") == d.meta["maximum"], d.name
        assert schema.get("multipleOf") == d.meta["multiple_of"], d.name
        assert schema.get("pattern") == d.meta["pattern"], d.name
        assert tuple(schema.get("enum") or ()) == tuple(d.meta["choices"] or ()), d.name
        assert tuple(cli[d.name].choices or ()) == tuple(d.meta["choices"] or ()), d.name
        assert cli[d.name].type is d.kind, d.name


def test_shard_seconds_has_one_type_everywhere():
    from vigil.cli import build_parser, params_from_args
    from vigil.orchestration.trigger import run_request_from

    schema = _form()["shard_seconds"][1]
    assert schema["type"] == "number"
    args = build_parser().parse_args(["process", "file:///in/a.mp4", "--out", "file:///out", "--shard-seconds", "60"])
    from_cli = params_from_args(args)
    form = {"sources": ["file:///in/a.mp4"], "out": "file:///out", "shard_seconds": 60}
    from_form = run_request_from(form, form, {"sources", "out", "shard_seconds"}).params
    assert type(from_cli.shard_seconds) is type(from_form.shard_seconds) is float
    assert from_cli.fingerprint() == from_form.fingerprint() == ProcessParams(shard_seconds=60).fingerprint()


@pytest.mark.parametrize("surface", ["cli", "form"])
def test_a_value_out_of_bounds_is_refused_on_every_surface(surface):
    from vigil.cli import build_parser, params_from_args
    from vigil.orchestration.trigger import run_request_from

    with pytest.raises(ParameterError, match="sample_fps must be in \\(0, 60\\]"):
        if surface == "cli":
            params_from_args(build_parser().parse_args(["process", "file:///a.mp4", "--out", "file:///o", "--sample-fps", "61"]))
        else:
            form = {"sources": ["file:///a.mp4"], "out": "file:///o", "sample_fps": 61}
            run_request_from(form, form, set(form))


@dataclasses.dataclass(frozen=True)
class _WithFrameRate(ProcessParams):
    """A parameter added the way the next one will be: one declaration, nothing else."""

    frame_rate: float | None = declared(None, "Frame rate of a raw stream", minimum=0, exclusive_minimum=True,
                                        maximum=240, unit="frames per second")  # fmt: skip


def test_a_new_declared_parameter_reaches_every_surface_by_itself():
    assert _cli_actions(_WithFrameRate)["frame_rate"].type is float
    value, schema = _form(_WithFrameRate)["frame_rate"]
    assert value is None and schema["type"] == ["null", "number"]
    assert schema["exclusiveMinimum"] == 0 and schema["maximum"] == 240
    assert _WithFrameRate(frame_rate=25).frame_rate == 25.0
    with pytest.raises(ParameterError, match="frame_rate must be off \\(null\\) or in \\(0, 240\\]"):
        _WithFrameRate(frame_rate=500)


def test_a_new_parameter_left_unset_keeps_earlier_fingerprints():
    assert _WithFrameRate().fingerprint() == ProcessParams().fingerprint()
    assert _WithFrameRate(frame_rate=25).fingerprint() != ProcessParams().fingerprint()
