"""Own personas and templates: a persona travels with its records, the user folder,
`templates/personas list|show|new`, shell completion of names."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from click.shell_completion import ShellComplete

from ai_content_pipeline.cli import script as script_cli
from ai_content_pipeline.cli import voice as voice_cli
from ai_content_pipeline.cli.main import cli
from ai_content_pipeline.jsonl import dumps, loads
from ai_content_pipeline.templates import load_persona, load_template, user_dir
from ai_content_pipeline.yamlfile import load_yaml
from tests.cli_helpers import invoke, run_bin
from tests.doubles import FakeLLM, SpeechTTS

SONG = {"id": "x", "artist": "A", "title": "T"}
ROSA = "name: rosa\ndisplay_name: Rosa\nstyle: You speak softly.\nseed: 5\nvoice:\n  piper: {length_scale: 1.3}\n"


def jsonl(records: list[dict]) -> bytes:
    return b"".join(dumps(r) + b"\n" for r in records)


def records_of(stdout: str) -> list[dict]:
    return [loads(line) for line in stdout.splitlines()]


def script(monkeypatch, args: list[str], records: list[dict]):
    llm = FakeLLM(replies=["Here is A with T, a classic."])
    monkeypatch.setattr(script_cli, "create_llm", lambda *a, **k: llm)
    return invoke(script_cli.script_command, "aicp-script", args, input=jsonl(records)), llm


def voice(monkeypatch, tmp_path: Path, records: list[dict], *args: str, tts=None):
    tts = tts or SpeechTTS()
    monkeypatch.setattr(voice_cli, "create_tts", lambda *a, **k: tts)
    res = invoke(voice_cli.voice_command, "aicp-voice", ["--out-dir", str(tmp_path / "out"), *args],
                 input=jsonl(records))
    return res, tts


class SettingsTTS(SpeechTTS):
    """A TTS double that keeps the persona settings its voice came from, under a real name."""

    def __init__(self, name: str = "piper", explicit: bool = False) -> None:
        super().__init__()
        self.name = name  # type: ignore[misc]
        self.explicit_voice = explicit
        self.personas: list = []

    def default_voice(self, persona=None, seed=None):
        self.personas.append(persona)
        return super().default_voice(persona, seed)


# -- a persona travels with its records ---------------------------------------------------------
def test_a_script_from_before_persona_voice_gets_a_hint_to_give_the_file(monkeypatch, tmp_path) -> None:
    old = {**SONG, "script": {"text": "Here is T.", "persona": "lola"}}  # no persona_voice
    res, _ = voice(monkeypatch, tmp_path, [old])
    [out] = records_of(res.stdout)
    assert res.exit_code == 3 and out["error"]["message"] == "unknown persona 'lola'"
    assert out["error"]["hint"].endswith("a script from a persona file: give the file, --persona ./lola.yaml")
    for bad, says in [("Rösa", "is not a persona name"), ("x" * 65, "is not a persona name"),
                      ("../rosa", "a record may name a persona, not a file")]:
        res, _ = voice(monkeypatch, tmp_path, [{**old, "persona": bad}])
        error = records_of(res.stdout)[0]["error"]
        assert error["message"].endswith(says) and error["field"] == "persona"
        assert ("not a file" in error["message"]) == ("/" in bad)


def test_a_persona_file_travels_to_voice_without_the_file(monkeypatch, tmp_path) -> None:
    rosa = tmp_path / "rosa.yaml"
    rosa.write_text(ROSA)
    res, _ = script(monkeypatch, ["-p", str(rosa)], [SONG])
    assert res.exit_code == 0, res.stderr
    [scripted] = records_of(res.stdout)
    assert scripted["script"]["persona"] == "rosa"
    assert scripted["script"]["persona_voice"]["seed"] == 5
    rosa.unlink()  # another machine: the file is not there
    tts = SettingsTTS()
    voiced, _ = voice(monkeypatch, tmp_path, [scripted], tts=tts)
    assert voiced.exit_code == 0, voiced.stderr
    [out] = records_of(voiced.stdout)
    assert out["audio"]["path"].endswith("x_rosa_0.wav")
    assert tts.calls[0][1].seed == 5
    assert tts.personas[0].voice.piper.length_scale == 1.3


def test_carried_settings_win_over_a_persona_of_that_name_here(monkeypatch, tmp_path) -> None:
    res, _ = script(monkeypatch, ["-p", "julie"], [SONG])
    [scripted] = records_of(res.stdout)
    home = Path(os.environ["AICP_HOME"]) / "personas"
    home.mkdir(parents=True)
    (home / "julie.yaml").write_text("display_name: Other Julie\nstyle: loud.\nseed: 77\n")
    tts = SettingsTTS()
    voiced, _ = voice(monkeypatch, tmp_path, [scripted], tts=tts)
    assert voiced.exit_code == 0, voiced.stderr
    assert tts.calls[0][1].seed == load_persona(str(Path(__file__).parents[1] / "ai_content_pipeline" /
                                                    "templates" / "personas" / "julie.yaml")).seed == 1101


def test_an_explicit_persona_file_wins_over_the_carried_settings(monkeypatch, tmp_path) -> None:
    rosa = tmp_path / "rosa.yaml"
    rosa.write_text(ROSA)
    res, _ = script(monkeypatch, ["-p", str(rosa)], [SONG])
    [scripted] = records_of(res.stdout)
    rosa.write_text(ROSA.replace("seed: 5", "seed: 9"))
    voiced, tts = voice(monkeypatch, tmp_path, [scripted], "-p", str(rosa))
    assert voiced.exit_code == 0, voiced.stderr
    assert tts.calls[0][1].seed == 9


@pytest.mark.parametrize(("backend", "setting"), [("piper", "voice"), ("piper", "model"), ("kokoro", "voices"),
                                                   ("chatterbox", "audio_prompt")])
def test_a_record_never_makes_voice_open_a_file(monkeypatch, tmp_path, backend, setting) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF")
    record = {**SONG, "script": {"text": "Hello there, night owls, here is a song.", "persona": "rosa",
                                 "persona_voice": {"seed": 1, backend: {setting: str(secret)}}}}
    tts = SettingsTTS(backend)
    voiced, _ = voice(monkeypatch, tmp_path, [record], tts=tts)
    assert voiced.exit_code == 3
    [out] = records_of(voiced.stdout)
    assert "cannot choose files" in out["error"]["message"] and "-p" in out["error"]["hint"]
    assert tts.calls == [] and not (tmp_path / "out" / "x_rosa.wav").exists()
    # the other backend's file setting is not needed: voiced, the setting dropped unread
    other = SettingsTTS("chatterbox" if backend == "piper" else "piper")
    voiced, _ = voice(monkeypatch, tmp_path, [record], tts=other)
    assert voiced.exit_code == 0, voiced.stderr
    assert getattr(getattr(other.personas[0].voice, backend), setting) is None
    # an explicit --voice wins over the persona's file: usable
    explicit = SettingsTTS(backend, explicit=True)
    voiced, _ = voice(monkeypatch, tmp_path / "e", [record], tts=explicit)
    assert voiced.exit_code == 0, voiced.stderr


@pytest.mark.parametrize("carried", [{"seed": "x"}, {"piper": {"length_scale": -1}}, {"voice": 1}, [1, 2],
                                     {"piper": {"length_scale": 1e6}}, {"piper": {"noise_scale": 1e9}},
                                     {"seed": 2**40}])
def test_bad_carried_settings_are_a_record_error(monkeypatch, tmp_path, carried) -> None:
    record = {**SONG, "script": {"text": "Hello there, night owls, here is a song.", "persona": "rosa",
                                 "persona_voice": carried}}
    voiced, tts = voice(monkeypatch, tmp_path, [record, {**SONG, "id": "y", "text": "Another fine song for you."}])
    assert voiced.exit_code == 3
    bad, good = records_of(voiced.stdout)
    assert "persona_voice" in bad["error"]["message"] and "audio" in good


# -- the user folder ---------------------------------------------------------------------------
def write_user(kind: str, name: str, text: str) -> Path:
    folder = Path(os.environ["AICP_HOME"]) / kind
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)
    return folder / f"{name}.yaml"


def test_user_folder_follows_aicp_home_then_xdg(monkeypatch, tmp_path) -> None:
    assert user_dir() == Path(os.environ["AICP_HOME"])
    monkeypatch.delenv("AICP_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert user_dir() == tmp_path / "aicp"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/path")  # not absolute: ignored, as the spec says
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert user_dir() == tmp_path / "h" / ".config" / "aicp"
    monkeypatch.setenv("AICP_HOME", "mine")  # relative: from the current folder, said absolute
    monkeypatch.chdir(tmp_path)
    assert user_dir() == tmp_path / "mine"
    res = invoke(cli, "aicp", ["personas", "new", "rosa"])
    assert res.exit_code == 0 and res.stdout == f"{tmp_path / 'mine' / 'personas' / 'rosa.yaml'}\n"


def test_user_persona_and_template_found_by_name_and_by_records(monkeypatch, tmp_path) -> None:
    write_user("personas", "rosa", ROSA)
    write_user("templates", "my-intro", "system: You are {{ persona.display_name }}.\n"
                                        "user: Introduce {{ title }}.\nrequired: [title]\n")
    res, llm = script(monkeypatch, ["-t", "my-intro"], [{**SONG, "persona": "rosa"}])
    assert res.exit_code == 0, res.stderr
    [out] = records_of(res.stdout)
    assert out["script"]["persona"] == "rosa" and out["script"]["template"] == "my-intro@1"
    assert "You are Rosa." in llm.calls[0]["messages"][0]["content"]


def test_a_user_file_overrides_the_builtin_of_its_name_and_list_says_so(monkeypatch) -> None:
    write_user("personas", "julie", "display_name: My Julie\nstyle: brisk.\n")
    assert load_persona("julie").display_name == "My Julie"
    res = invoke(cli, "aicp", ["personas", "list"])
    by_name = {p["name"]: p for p in records_of(res.stdout)}
    assert by_name["julie"]["source"] == "user" and by_name["julie"]["overrides"] == "builtin"
    assert by_name["max"]["source"] == "builtin" and "overrides" not in by_name["max"]
    write_user("templates", "extra", "system: s\nuser: u {{ title }}\n")
    by_name = {t["name"]: t for t in records_of(invoke(cli, "aicp", ["templates", "list"]).stdout)}
    assert by_name["extra"]["source"] == "user" and by_name["song-intro"]["source"] == "builtin"
    assert by_name["extra"]["path"].endswith("templates/extra.yaml")


def test_a_user_file_must_carry_its_own_name(monkeypatch) -> None:
    write_user("personas", "rosa", ROSA.replace("name: rosa", "name: julie"))
    res, llm = script(monkeypatch, ["-p", "rosa"], [SONG])
    assert res.exit_code == 2 and "is not the file's name" in res.stderr and llm.calls == []


def test_an_edited_user_file_is_read_again(monkeypatch) -> None:
    path = write_user("personas", "rosa", ROSA)
    assert load_persona("rosa").seed == 5
    path.write_text(ROSA.replace("seed: 5", "seed: 55555"))
    assert load_persona("rosa").seed == 55555


@pytest.mark.parametrize("name", ["../evil", ".hidden", "a/b", "x.yaml", "", "-x", "a" * 65, "a..b"])
@pytest.mark.parametrize("kind", ["templates", "personas"])
def test_new_refuses_unsafe_names(kind, name) -> None:
    res = invoke(cli, "aicp", [kind, "new", name])
    assert res.exit_code == 2 and res.stdout == ""
    assert not any(Path(os.environ["AICP_HOME"]).rglob("*"))


@pytest.mark.parametrize("kind", ["templates", "personas"])
def test_new_writes_a_valid_commented_starter_and_never_overwrites(kind) -> None:
    res = invoke(cli, "aicp", [kind, "new", "mine"])
    assert res.exit_code == 0, res.stderr
    path = Path(res.stdout.strip())
    assert path == Path(os.environ["AICP_HOME"]) / kind / "mine.yaml"
    text = path.read_text()
    assert text.startswith("#") and "name: mine" in text
    item = load_template("mine") if kind == "templates" else load_persona("mine")
    assert item.name == "mine"
    path.write_text(text + "# my edit\n")
    again = invoke(cli, "aicp", [kind, "new", "mine"])
    assert again.exit_code == 2 and "exists" in again.stderr and "not overwritten" in again.stderr
    assert again.stderr.count("hint") + again.stderr.count("Hint") >= 1
    assert path.read_text().endswith("# my edit\n")
    assert [p.name for p in path.parent.iterdir()] == ["mine.yaml"]  # no temporary file left


def test_a_new_template_runs(monkeypatch) -> None:
    assert invoke(cli, "aicp", ["templates", "new", "starter"]).exit_code == 0
    res, llm = script(monkeypatch, ["-t", "starter"], [SONG])
    assert res.exit_code == 0, res.stderr
    assert records_of(res.stdout)[0]["script"]["template"] == "starter@1" and len(llm.calls) == 1


# -- show prints YAML a user can copy ----------------------------------------------------------
@pytest.mark.parametrize(("kind", "name"), [("templates", "song-intro"), ("templates", "podcast-longform"),
                                            ("personas", "julie")])
def test_show_prints_yaml_that_loads_back_equal(kind, name, tmp_path, monkeypatch) -> None:
    res = invoke(cli, "aicp", [kind, "show", name])
    assert res.exit_code == 0 and res.stderr == ""
    data, _ = load_yaml(res.stdout)
    as_json = orjson.loads(invoke(cli, "aicp", [kind, "show", name, "--json"]).stdout)
    assert data == as_json and "source" not in data
    copy = tmp_path / "copy.yaml"
    copy.write_text(res.stdout)
    loader = load_template if kind == "templates" else load_persona
    assert loader(str(copy)).model_dump(exclude={"source"}) == loader(name).model_dump(exclude={"source"})


# -- shell completion --------------------------------------------------------------------------
def completions(command, prog: str, args: list[str], incomplete: str) -> list[str]:
    comp = ShellComplete(command, {}, prog, "_X_COMPLETE")
    return [c.value for c in comp.get_completions(args, incomplete)]


def test_completion_of_template_and_persona_names(monkeypatch) -> None:
    write_user("personas", "rosa", ROSA)
    assert completions(script_cli.script_command, "aicp-script", ["-p"], "") == ["julie", "max", "rosa", "sam"]
    assert completions(script_cli.script_command, "aicp-script", ["--persona"], "r") == ["rosa"]
    assert completions(script_cli.script_command, "aicp-script", ["-t"], "song-") == ["song-intro", "song-outro"]
    assert completions(voice_cli.voice_command, "aicp-voice", ["-p"], "m") == ["max"]
    assert completions(cli, "aicp", ["templates", "show"], "st") == ["station-id"]


def test_completion_through_the_shell_protocol(tmp_path) -> None:
    proc = run_bin("aicp-script", env={"_AICP_SCRIPT_COMPLETE": "bash_complete", "COMP_WORDS": "aicp-script -p j",
                                       "COMP_CWORD": "2"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().splitlines() == ["plain,julie"]


def test_run_chain_config_completes_as_a_file() -> None:
    proc = run_bin("aicp", env={"_AICP_COMPLETE": "bash_complete", "COMP_WORDS": "aicp run-chain --config ex",
                                "COMP_CWORD": "3"}, timeout=60)
    assert proc.returncode == 0 and proc.stdout.decode().splitlines() == ["file,ex"], proc.stderr


def test_carried_settings_belong_to_the_name_in_script_persona_only(monkeypatch, tmp_path) -> None:
    record = {**SONG, "persona": "max", "script": {"text": "Hello there, night owls, here is a song.",
                                                  "persona": "rosa", "persona_voice": {"seed": 5}}}
    tts = SettingsTTS()
    voiced, _ = voice(monkeypatch, tmp_path, [record], tts=tts)
    assert voiced.exit_code == 0, voiced.stderr
    assert tts.calls[0][1].seed == load_persona("max").seed and records_of(voiced.stdout)[0]["audio"]["path"] \
        .endswith("x_max.wav")


@pytest.mark.parametrize("args", [["templates", "show", "--help"], ["templates", "new", "--help"],
                                  ["personas", "new", "--help"], ["personas", "list", "--help"], ["logs", "--help"]])
def test_help_has_examples(args) -> None:
    res = invoke(cli, "aicp", args)
    assert res.exit_code == 0 and "Examples:" in res.stdout and "aicp " in res.stdout.split("Examples:")[1]


# -- a user folder with broken or hostile files --------------------------------------------------
@pytest.mark.parametrize("kind", ["templates", "personas"])
def test_list_names_a_broken_user_file_and_lists_the_others(kind, tmp_path) -> None:
    folder = Path(os.environ["AICP_HOME"]) / kind
    write_user(kind, "broken", "name: broken\nstyle: [unclosed\n")
    write_user(kind, "other-name", "name: someone-else\nstyle: x\nsystem: s\nuser: u\n")
    (folder / "passwd.yaml").symlink_to("/etc/passwd")  # a link to a file that is no mapping
    os.mkfifo(folder / "pipe.yaml")  # not a regular file: ignored, never opened (no hang)
    good = "name: fine\nsystem: s\nuser: u {{ title }}\n" if kind == "templates" else "name: fine\ndisplay_name: F\nstyle: x\n"
    write_user(kind, "fine", good)
    res = invoke(cli, "aicp", [kind, "list"])
    listed = {item["name"]: item["source"] for item in records_of(res.stdout)}
    assert res.exit_code == 3  # some files need fixing; the rest are listed
    assert listed["fine"] == "user" and "broken" not in listed and "passwd" not in listed
    assert len([n for n, s in listed.items() if s == "builtin"]) >= 3
    err = res.stderr.splitlines()
    prog = f"aicp {kind} list: "
    assert all(line.startswith(prog) for line in err), err
    warned = [line for line in err if line.startswith(prog + "warning: skipped ")]
    assert len(warned) == 3 and all(str(folder) in line for line in warned), err
    assert any("broken.yaml:" in w and "not valid YAML" in w for w in warned)
    assert any("passwd.yaml must hold a mapping" in w for w in warned)
    assert any("other-name.yaml: name: 'someone-else'" in w for w in warned)
    assert "root:" not in res.stderr  # nothing of the linked file is shown
    from ai_content_pipeline.templates import list_personas, list_templates

    lister = list_templates if kind == "templates" else list_personas
    assert "fine" in {item["name"] for item in lister()}  # the service's catalog: no error, no file
    # one broken file does not stop a run that names another
    shown = invoke(cli, "aicp", [kind, "show", "fine", "--json"])
    assert shown.exit_code == 0 and orjson.loads(shown.stdout)["name"] == "fine"


def test_aicp_home_that_is_a_file_is_named_by_list(monkeypatch, tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("AICP_HOME", str(tmp_path / "file"))
    res = invoke(cli, "aicp", ["personas", "list"])
    assert res.exit_code == 3 and {p["name"] for p in records_of(res.stdout)} >= {"julie", "max", "sam"}
    assert res.stderr.splitlines()[0] == (f"aicp personas list: warning: skipped user folder {tmp_path / 'file'}: "
                                          "not a folder, so no own personas are found")
    made = invoke(cli, "aicp", ["personas", "new", "rosa"])
    assert made.exit_code == 2 and "cannot create the user folder" in made.stderr
    assert (tmp_path / "file").read_text() == "x"


def test_new_never_replaces_a_link_or_a_file(tmp_path) -> None:
    folder = Path(os.environ["AICP_HOME"]) / "personas"
    folder.mkdir(parents=True)
    target = tmp_path / "precious.txt"
    target.write_text("keep")
    (folder / "linked.yaml").symlink_to(target)
    (folder / "dangling.yaml").symlink_to(tmp_path / "nowhere")
    for name in ("linked", "dangling"):
        res = invoke(cli, "aicp", ["personas", "new", name])
        assert res.exit_code == 2 and "exists; it was not overwritten" in res.stderr
    assert target.read_text() == "keep" and not (tmp_path / "nowhere").exists()
    assert (folder / "dangling.yaml").is_symlink()


@pytest.mark.parametrize("kind", ["templates", "personas"])
def test_a_starter_stays_valid_in_a_folder_with_a_newline_in_its_name(kind, monkeypatch, tmp_path) -> None:
    home = tmp_path / "odd\nname: x\t#"
    monkeypatch.setenv("AICP_HOME", str(home))
    res = invoke(cli, "aicp", [kind, "new", "mine"])
    assert res.exit_code == 0, res.stderr
    assert (home / kind / "mine.yaml").is_file()
    shown = invoke(cli, "aicp", [kind, "show", "mine", "--json"])
    assert shown.exit_code == 0, shown.stderr
    assert orjson.loads(shown.stdout)["name"] == "mine"


def test_a_jinja_syntax_error_names_the_file(monkeypatch) -> None:
    """A broken copy of a built-in in the user folder is told apart from the built-in: by its path."""
    path = write_user("templates", "song-intro", "system: s\nuser: Introduce {{ title }.\n")
    res = invoke(cli, "aicp", ["templates", "list"])
    assert res.exit_code == 3
    assert "song-intro" not in {t["name"] for t in records_of(res.stdout)}
    assert res.stderr == (f"aicp templates list: warning: skipped template file {path}: prompt 'user': "
                          "Jinja2 syntax error on line 1 of the prompt: unexpected '}'\n")
    ran, llm = script(monkeypatch, ["-t", "song-intro"], [SONG])
    assert ran.exit_code == 2 and llm.calls == []
    assert ran.stderr.startswith(f"aicp-script: error: template file {path}: prompt 'user': Jinja2 syntax error")


@pytest.mark.parametrize("kind", ["templates", "personas"])
def test_list_names_each_user_file_that_no_name_finds(kind) -> None:
    """Names are ASCII (``new café`` is refused): ``café.yaml`` is not skipped silently, nor a ``.yml``."""
    good = "system: s\nuser: u {{ title }}\n" if kind == "templates" else "display_name: F\nstyle: x\n"
    write_user(kind, "fine", good)
    for stem in ("café", "my intro"):
        write_user(kind, stem, good)
    folder = Path(os.environ["AICP_HOME"]) / kind
    (folder / "fine2.yml").write_text(good)
    (folder / ".hidden.yaml").write_text(good)  # a hidden file is no one's: not listed, not warned
    assert invoke(cli, "aicp", [kind, "new", "café"]).exit_code == 2  # not a name
    res = invoke(cli, "aicp", [kind, "list"])
    assert res.exit_code == 3
    assert {"fine"} == {item["name"] for item in records_of(res.stdout) if item["source"] == "user"}
    err = res.stderr.splitlines()
    one = kind.rstrip("s")
    prog = f"aicp {kind} list: "
    assert err == [
        f"{prog}warning: skipped {one} file {folder / 'café.yaml'}: 'café' is not a {one} name, so no name finds it",
        f"{prog}hint: rename it: a name is 1-64 ASCII letters, digits, '.', '_' or '-', starting with a letter "
        "or digit; or give the file as a path",
        f"{prog}warning: skipped {one} file {folder / 'fine2.yml'}: the user folder's files end in .yaml, so no "
        "name finds it",
        f"{prog}hint: rename it fine2.yaml, or give the file as a path",
        f"{prog}warning: skipped {one} file {folder / 'my intro.yaml'}: 'my intro' is not a {one} name, so no "
        "name finds it",
        f"{prog}hint: rename it: a name is 1-64 ASCII letters, digits, '.', '_' or '-', starting with a letter "
        "or digit; or give the file as a path",
    ]
    # as the hint says, the file still serves as a path
    shown = invoke(cli, "aicp", [kind, "show", str(folder / "café.yaml"), "--json"])
    assert shown.exit_code == 0 and orjson.loads(shown.stdout)["name"] == "café"


@pytest.mark.parametrize("kind", ["templates", "personas"])
def test_list_resolves_each_name_once_and_reads_the_builtin_folder_once(kind, monkeypatch) -> None:
    from ai_content_pipeline.templates import store

    good = "system: s\nuser: u {{ title }}\n" if kind == "templates" else "display_name: F\nstyle: x\n"
    builtin = "song-intro" if kind == "templates" else "julie"
    for name in ("mine", "yours", builtin):  # the last overrides a built-in
        write_user(kind, name, good.replace("display_name: F", f"name: {name}\ndisplay_name: F")
                   if kind == "personas" else f"name: {name}\n" + good)
    resolved: list[str] = []
    read: list[str] = []
    real_resolve, real_builtin = store._resolve, store._builtin_names
    monkeypatch.setattr(store, "_resolve", lambda ref, k: resolved.append(ref) or real_resolve(ref, k))
    monkeypatch.setattr(store, "_builtin_names", lambda k: read.append(k) or real_builtin(k))
    res = invoke(cli, "aicp", [kind, "list"])
    assert res.exit_code == 0, res.stderr
    listed = records_of(res.stdout)
    assert sorted(resolved) == sorted(item["name"] for item in listed) and len(listed) >= 5
    assert read == [kind.rstrip("s")]
    by_name = {item["name"]: item for item in listed}
    assert by_name[builtin]["overrides"] == "builtin" and "overrides" not in by_name["mine"]
