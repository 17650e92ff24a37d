"""Deploy the app to a Hugging Face Space in one command:

    python -m bear_classifier.ship.deploy --space you/bear-classifier                    # ZeroGPU on a free account
    python -m bear_classifier.ship.deploy --space you/bear-classifier --model-repo you/bear-classifier --revision <sha>
    python -m bear_classifier.ship.deploy --space you/bear-classifier --check --wait     # run the tree here first, then
                                                                                    # wait for the Space and call it
    python -m bear_classifier.ship.deploy --out build/space      # write the Space's files for git, send nothing

It picks the hardware (`--hardware`, else the Space's own if it exists, else from the account's plan: ZeroGPU for
a free account, CPU basic for PRO), builds the Space's files for that hardware and the model's own versions
(`spacetree`), optionally runs that exact tree in a fresh venv here (`--check`, `spacecheck`), creates the Space if
needed, sets its variables (and a private Storage Bucket at /data with `--bucket`), uploads exactly those files
in one commit (deleting anything an earlier upload left), and with `--wait` follows the build until the Space
runs and answers one example. Large files (model.pkl) are handled by huggingface_hub (Xet/LFS); no git needed.

The Hub is reached through `huggingface_hub.HfApi`, whose endpoint comes from HF_ENDPOINT (which is how the tests
point it at a local stand-in, tests/hub_standin.py).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, Volume, get_token, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError

from bear_classifier.model import card, modelfile, servedfiles
from bear_classifier.settings import ROOT
from bear_classifier.ship import spacecheck, spacetree
from bear_classifier.ship.hub import COMMIT_SHA, NO_TOKEN_HELP
from bear_classifier.ship.spacecheck import SpaceCheckError
from bear_classifier.ship.spacetree import HARDWARE, Hardware, SpaceTreeError

REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")
MODEL_VARIABLES = ("BEAR_MODEL_REPO", "BEAR_MODEL_REVISION")
PAYMENT_HELP = (
    "The Hub answered 402 Payment Required: since July 2026 a Gradio Space on {flavor} needs a PRO account (or a "
    "Team/Enterprise organisation); free accounts may host up to 2 Gradio Spaces on ZeroGPU. Deploy with "
    "--hardware zero-a10g (the default for a free account), or subscribe at https://huggingface.co/pro. "
    "Sources: https://huggingface.co/docs/hub/spaces-overview, https://huggingface.co/docs/hub/spaces-zerogpu."
)
FORBIDDEN_HELP = (
    "The Hub answered 403 Forbidden to {what}: {detail}. Check that the token has write access to {namespace} "
    "(https://huggingface.co/settings/tokens); on ZeroGPU a free account may host at most 2 Spaces and a PRO "
    "account 10: delete or move one (Settings > Hardware), or deploy with --hardware cpu-basic on PRO."
)
FAILED_STAGES = {"BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR", "NO_APP_FILE", "PAUSED", "STOPPED", "DELETING"}


class DeployError(RuntimeError):
    """Something the user must fix before deploying; the message says what."""


def example_class(name: str, vocab: Sequence[str]) -> str | None:
    """The class an example's file name names, if any: `black_bear.jpg` -> black, `banana.jpg` -> banana (the
    longest class that is the name or starts it before `_`, `-` or a space); `cat.jpg` -> None."""
    stem = Path(name).stem.lower()
    named = [c for c in vocab if stem == c.lower() or re.match(rf"{re.escape(c.lower())}[_\- ]", stem)]
    return max(named, key=len, default=None)


def check_examples(answers: dict[str, dict[str, float]], vocab: Sequence[str]) -> None:
    """Refuse examples whose file name names a class the model does not answer (`answers`: {file name:
    probabilities}, as the checked Space gave them): a visitor's first click would show the model wrong."""
    wrong = []
    for name, probabilities in sorted(answers.items()):
        top = max(probabilities, key=probabilities.get)
        if (named := example_class(name, vocab)) is not None and top != named:
            wrong.append(f"{name} names {named}, the model answers {top} ({probabilities[top]:.1%})")
    if wrong:
        raise DeployError(
            "Examples the model gets wrong: "
            + "; ".join(wrong)
            + ". Replace them (training.ipynb proposes photos the model gets right: -p write_examples True), "
            "rename those that show none of the classes, or train a better model."
        )


@dataclass
class Model:
    """What the Space serves: its card's versions and facts, whether model.pkl is portable across Python minors,
    and the files to upload (None when the Space fetches them from `repo` at `revision`)."""

    versions: dict[str, str]
    vocab: list[str]
    portable: bool
    upload: tuple[bytes, bytes] | None
    pickle: Path
    repo: str | None = None
    revision: str | None = None
    private: bool = False
    subject: card.Subject = card.BEARS

    @property
    def pin(self) -> tuple[str, str] | None:
        """(repo, revision) the Space serves from (its BEAR_MODEL_REPO/BEAR_MODEL_REVISION), None: model.pkl."""
        return (self.repo, self.revision) if self.repo and self.revision else None


def local_model(root: Path = ROOT) -> Model:
    pickle, model_card = Path(root) / "model.pkl", Path(root) / "model_card.md"
    for path in (pickle, model_card):
        if not path.is_file():
            raise DeployError(
                f"No {path.name} at {root}: train a model first (training.ipynb), or serve one from the Hub with "
                "--model-repo you/bear-classifier --revision <commit sha>"
            )
    facts = card.read(model_card)
    servedfiles.make(pickle, facts)  # what a Space's start serves from, without fastai or unpickling
    upload = (pickle.read_bytes(), model_card.read_bytes())
    portable = not modelfile.by_value_code(pickle)
    return Model(facts.versions, facts.vocab, portable, upload, pickle, subject=card.Subject.of(facts))


def hub_model(api: HfApi, repo: str, revision: str) -> Model:
    """The pinned model repo's card and model.pkl (downloaded: its versions and portability decide the Space)."""
    try:
        info = api.model_info(repo, revision=revision)
        readme = hf_hub_download(repo, "README.md", revision=revision, token=api.token)
        pickle = hf_hub_download(repo, "model.pkl", revision=revision, token=api.token)
    except HfHubHTTPError as e:
        raise DeployError(
            f"Could not read model.pkl and README.md of {repo} at {revision} ({_status(e)}): check the id, the "
            "commit SHA the notebook's push printed, and that this token can read the repo."
        ) from e
    facts = card.read(Path(readme))
    portable = not modelfile.by_value_code(Path(pickle))
    private = bool(info.private)
    return Model(
        facts.versions, facts.vocab, portable, None, Path(pickle), repo, revision, private, card.Subject.of(facts)
    )


def choose_hardware(api: HfApi, space: str, requested: str | None) -> tuple[Hardware, str]:
    """(hardware, why): `requested`, else the existing Space's, else from the account's plan (`whoami`)."""
    if requested:
        return HARDWARE[requested], "asked for with --hardware"
    try:
        runtime = api.get_space_runtime(space)
        current = runtime.requested_hardware or runtime.hardware
        if current in HARDWARE:
            return HARDWARE[current], f"the Space runs on {current} already"
    except HfHubHTTPError:
        pass  # no such Space yet
    namespace = space.split("/")[0]
    try:
        me = api.whoami()
    except HfHubHTTPError:
        return spacetree.ZERO_GPU, "the account's plan could not be read: ZeroGPU is the hardware every account may use"
    if me.get("name") == namespace:
        if me.get("isPro"):
            return spacetree.CPU_BASIC, "a PRO account: CPU basic, where the app's CPU inference was measured"
        return spacetree.ZERO_GPU, "a free account: ZeroGPU is the one Gradio hardware it may host"
    return spacetree.ZERO_GPU, f"the plan of organisation {namespace} is not known here: ZeroGPU fits every plan"


def space_files(
    hardware: Hardware = spacetree.CPU_BASIC, model: Model | None = None, root: Path = ROOT
) -> dict[str, bytes]:
    """{path in the Space: content} for `hardware`, serving `model` (default: the committed model.pkl)."""
    model = model or local_model(root)
    note = spacetree.torch_note(hardware, model.versions, root)
    if note:
        print(note)
    try:
        return spacetree.files(
            hardware,
            model.versions,
            portable=model.portable,
            model=model.upload,
            model_repo=model.repo,
            revision=model.revision,
            preload=not model.private,
            root=root,
            subject=model.subject,
            vocab=tuple(model.vocab),
        )
    except SpaceTreeError as e:
        raise DeployError(str(e)) from e


def check_options(*, space: str | None, model_repo: str | None, revision: str | None) -> None:
    if space is not None and not REPO_ID.fullmatch(space):
        raise DeployError(f"--space {space!r} is not a Space id: use `your-name/space-name`")
    if model_repo is not None and not REPO_ID.fullmatch(model_repo):
        raise DeployError(f"--model-repo {model_repo!r} is not a model repo id: use `your-name/repo-name`")
    if revision and not model_repo:
        raise DeployError("--revision pins the model repo: give --model-repo too, or leave both out to ship model.pkl")
    if model_repo and not (revision and COMMIT_SHA.fullmatch(revision)):
        raise DeployError(
            f"--model-repo {model_repo} needs --revision <40-character commit SHA> (got {revision!r}): a pickle is "
            "code, so the Space loads it at a pinned commit only. Use the SHA printed by the notebook's push, or "
            f"`python -c \"from huggingface_hub import HfApi; print(HfApi().model_info('{model_repo}').sha)\"`."
        )


def write(folder: Path, files: dict[str, bytes]) -> Path:
    """Write the Space's files into `folder` (e.g. a clone of the Space, for git users); sends nothing."""
    folder = Path(folder)
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def deploy(
    *,
    space: str,
    model_repo: str | None = None,
    revision: str | None = None,
    hardware: str | None = None,
    token: str | None = None,
    private: bool | None = None,
    bucket: str | None = None,
    check: bool = False,
    wait: float | None = None,
    root: Path = ROOT,
) -> str:
    """Create or update the Space `space` in one commit; returns its URL.

    With `model_repo` and `revision`, the Space serves model.pkl from that model repo at that commit (Space
    variables BEAR_MODEL_REPO/BEAR_MODEL_REVISION, and `preload_from_hub` in the README); without, it serves the
    local model.pkl, and those variables are removed if an earlier deploy set them. `check`: run the exact tree
    in a fresh venv here first (`spacecheck`); `wait`: seconds to follow the build, then call /predict once.
    """
    check_options(space=space, model_repo=model_repo, revision=revision)
    token = token or get_token()
    if not token:
        raise DeployError(NO_TOKEN_HELP)
    api = HfApi(token=token)
    model = hub_model(api, model_repo, revision) if model_repo else local_model(root)
    chosen, why = choose_hardware(api, space, hardware)
    print(f"Hardware: {chosen.flavor} ({why}).")
    files = space_files(chosen, model, root)
    if model.private:
        _check_space_can_read(api, space, model)
    if check:
        answers = spacecheck.run(
            files, chosen, model_pickle=model.pickle, vocab=model.vocab, hub_token=token, model=model.pin
        )
        check_examples(answers, model.vocab)
    url = _create(api, space, chosen, private)
    # Variables and volumes first: setting one restarts the Space, and the build the commit starts must see them.
    if model_repo:
        api.add_space_variable(space, "BEAR_MODEL_REPO", model_repo, description="Hub model repo serving model.pkl")
        api.add_space_variable(space, "BEAR_MODEL_REVISION", revision, description="its pinned commit SHA")
    else:
        for key in set(MODEL_VARIABLES) & set(api.get_space_variables(space)):
            api.delete_space_variable(space, key)
    if bucket:
        _mount_private_bucket(api, space, bucket)
    stale = [path for path in api.list_repo_files(space, repo_type="space") if path not in files]
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=data) for name, data in files.items()]
    operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
    served = f"{model_repo}@{revision[:7]}" if model_repo else "model.pkl"
    info = api.create_commit(
        space, repo_type="space", operations=operations, commit_message=f"Deploy bear classifier ({served})"
    )
    print(f"Uploaded {len(files)} files{f', deleted {len(stale)}' if stale else ''} to {space} at commit {info.oid}")
    print(f"Space: {url}")
    if wait:
        wait_until_running(api, space, timeout=wait, example=min((root / "examples").glob("*.jpg")), commit=info.oid)
    return str(url)


def _status(error: HfHubHTTPError) -> str:
    response = getattr(error, "response", None)
    return f"HTTP {response.status_code}" if response is not None else str(error)


def _server_message(error: HfHubHTTPError) -> str:
    response = getattr(error, "response", None)
    try:
        return str(response.json().get("error") or response.text)
    except Exception:
        return str(error)


def _create(api: HfApi, space: str, hardware: Hardware, private: bool | None) -> str:
    """Create the Space on `hardware` (an existing one is asked to move to it), turning the Hub's plan refusals
    into what to do."""
    try:
        url = api.create_repo(
            space,
            repo_type="space",
            space_sdk="gradio",
            space_hardware=hardware.flavor,
            exist_ok=True,
            private=private,
        )
        runtime = api.get_space_runtime(space)
        if (runtime.requested_hardware or runtime.hardware) not in (None, hardware.flavor):
            api.request_space_hardware(space, hardware.flavor)
    except HfHubHTTPError as e:
        status = e.response.status_code if getattr(e, "response", None) is not None else None
        if status == 402:
            raise DeployError(PAYMENT_HELP.format(flavor=hardware.flavor)) from e
        if status == 403:
            raise DeployError(
                FORBIDDEN_HELP.format(
                    what=f"creating {space} on {hardware.flavor}",
                    detail=_server_message(e),
                    namespace=space.split("/")[0],
                )
            ) from e
        raise
    return str(url)


def _check_space_can_read(api: HfApi, space: str, model: Model) -> None:
    """A private model repo: Spaces cannot preload it (no `preload_from_hub`), so the app downloads model.pkl at
    start-up with the Space's secret HF_TOKEN, which must exist."""
    try:
        secrets = api.get_space_secrets(space)
    except HfHubHTTPError:
        secrets = {}  # no Space yet
    if "HF_TOKEN" not in secrets:
        raise DeployError(
            f"{model.repo} is private, and the Space {space} has no HF_TOKEN secret to read it with. Spaces cannot "
            "preload a private repo, so the app downloads model.pkl when it starts (at the pinned commit, checked "
            "against its SHA-256), and without the secret that start would fail. Make the model repo public, or "
            "give the Space a read "
            f'token (https://huggingface.co/settings/tokens): `python -c "from huggingface_hub import HfApi; '
            f"HfApi().add_space_secret('{space}', 'HF_TOKEN', '<read token>')\"` (create the Space first by deploying "
            "it once without --model-repo), then deploy again."
        )


def _mount_private_bucket(api: HfApi, space: str, bucket: str) -> None:
    """Flags are visitors' photos: the bucket is created private, and an existing public one is refused."""
    api.create_bucket(bucket, private=True, exist_ok=True)
    if not api.bucket_info(bucket).private:
        raise DeployError(
            f"The Storage Bucket {bucket} is public: flagged photos are visitors' photos. Make it private (its "
            "settings page) or name a new bucket with --bucket."
        )
    api.set_space_volumes(space, [Volume(type="bucket", source=bucket, mount_path="/data")])
    print(f"Storage Bucket {bucket} (private) mounted at /data: flags go to /data/review and survive restarts.")


def wait_until_running(
    api: HfApi, space: str, *, timeout: float, example: Path, every: float = 10, commit: str | None = None
) -> dict:
    """Follow the Space's runtime until it runs `commit` (then call /predict once on `example` and return the
    details) or fails (then raise `DeployError` with the stage and the tail of its log).

    Right after an upload the runtime may still be RUNNING the previous commit, whose app would answer
    /predict. `HfApi.wait_for_space` (huggingface_hub 2.4) returns at the first stage that is not building or
    starting, which is that old RUNNING, so it cannot tell; the runtime's `sha` (the commit it runs) can. Where the
    Hub reports no `sha`, RUNNING counts only once a build or start stage was seen after the upload."""
    deadline = time.monotonic() + timeout
    stage, rebuilt = None, commit is None
    while time.monotonic() < deadline:
        runtime = api.get_space_runtime(space)
        stage, running = str(runtime.stage), (runtime.raw or {}).get("sha")
        current = running == commit if running and commit else rebuilt
        print(f"Space {space}: {stage}{f' at {running[:7]}' if running else ''}", flush=True)
        if stage == "RUNNING" and current:
            from gradio_client import Client, handle_file

            host = api.space_info(space).host or space
            _, verdict, details = Client(host, token=api.token, verbose=False).predict(
                handle_file(str(example)), api_name="/predict"
            )
            print(f"/predict on {example.name}: {verdict} {details}")
            return details
        if stage == "RUNNING":
            print(f"  still the previous build: waiting for commit {commit[:7]}", flush=True)
        elif stage in FAILED_STAGES:
            log = list(api.fetch_space_logs(space, build=stage in ("BUILD_ERROR", "CONFIG_ERROR")))
            tail = "".join(log[-30:]).rstrip()
            raise DeployError(f"The Space stopped at {stage}. The end of its log:\n{tail}")
        else:
            rebuilt = True
        time.sleep(every)
    raise DeployError(f"The Space was still {stage} after {timeout:.0f} s: look at its logs on the Space's page")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bear_classifier.ship.deploy",
        description="Deploy the bear classifier to a Hugging Face Space (created if needed), in one commit.",
    )
    parser.add_argument("--space", help="the Space id, e.g. your-name/bear-classifier")
    parser.add_argument("--model-repo", help="serve model.pkl from this Hub model repo instead of the local file")
    parser.add_argument("--revision", help="the model repo's commit SHA to pin (required with --model-repo)")
    parser.add_argument(
        "--hardware",
        choices=sorted(HARDWARE),
        help="zero-a10g (ZeroGPU: free accounts, up to 2 Spaces) or cpu-basic (PRO); default: the Space's own, "
        "else from the account's plan",
    )
    parser.add_argument("--token", help="a write token (default: HF_TOKEN or the token saved by `hf auth login`)")
    parser.add_argument("--private", action="store_true", default=None, help="create the Space private")
    parser.add_argument(
        "--bucket", help="create this Storage Bucket private (e.g. you/bear-reviews), mount it at /data"
    )
    parser.add_argument("--check", action="store_true", help="run the Space's exact tree in a fresh venv here first")
    parser.add_argument("--wait", type=float, nargs="?", const=1800, help="follow the build (seconds, default 1800)")
    parser.add_argument("--out", type=Path, help="write the Space's files into this folder (for git) and send nothing")
    args = parser.parse_args(argv)
    try:
        check_options(space=args.space, model_repo=args.model_repo, revision=args.revision)
        if args.space and not args.out:
            deploy(
                space=args.space,
                model_repo=args.model_repo,
                revision=args.revision,
                hardware=args.hardware,
                token=args.token,
                private=args.private,
                bucket=args.bucket,
                check=args.check,
                wait=args.wait,
            )
            return 0
        if not (args.out or args.check):
            parser.error("--space your-name/space-name is required (or --out FOLDER / --check without uploading)")
        # Without a Space: the tree for --hardware (default ZeroGPU, the free accounts' hardware), written or checked.
        hardware = HARDWARE[args.hardware or spacetree.ZERO_GPU.flavor]
        model = hub_model(HfApi(token=args.token), args.model_repo, args.revision) if args.model_repo else local_model()
        files = space_files(hardware, model)
        if args.check:
            answers = spacecheck.run(
                files, hardware, model_pickle=model.pickle, vocab=model.vocab, hub_token=args.token, model=model.pin
            )
            check_examples(answers, model.vocab)
        if args.out:
            print(f"Wrote the Space's files for {hardware.flavor} to {write(args.out, files)}")
    except (DeployError, SpaceCheckError) as e:
        print(f"deploy: {e}", file=sys.stderr)
        return 2
    except HfHubHTTPError as e:  # anything else the Hub refused: its own words, not a traceback
        print(f"deploy: the Hub refused a request ({_status(e)}): {_server_message(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
