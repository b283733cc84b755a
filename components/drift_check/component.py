"""drift_check: compare the current window (new interactions) with the training data; outputs whether it drifted."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Output

from .. import DEFAULT_IMAGE  # the package constant (a relative import: no library is loaded here)


def drift_check(
    reference_uri: str,
    current_uri: str,
    report: Output[HTML],
    result: Output[Artifact],
    threshold: float = 0.1,
    min_drifted: int = 2,
) -> bool:
    import json
    import shutil
    from pathlib import Path

    from hllm.data.readers import read_raw
    from hllm.data.validation import require_pass, validate_tables
    from hllm.drift import DriftConfig, check_drift, interaction_events

    if not report.uri.endswith(".html"):  # kfp names the file after the output: make it open as a web page
        report.uri += ".html"

    def load(uri):  # both windows pass the same validation gate as training data
        return require_pass(validate_tables(read_raw(uri), report_dir=None))

    reference, current = load(reference_uri), load(current_uri)
    out = Path(result.path)
    found = check_drift(
        interaction_events(reference.interactions),
        interaction_events(current.interactions),
        reference.items,
        out,
        DriftConfig(threshold=float(threshold), min_drifted=int(min_drifted)),
    )
    shutil.copyfile(out / "drift.html", report.path)
    result.metadata.update({"drifted": found.drifted, "reasons": found.reasons})
    print(json.dumps(found.signals, indent=2))
    return found.drifted


def make(image: str = DEFAULT_IMAGE):
    return dsl.component(drift_check, base_image=image)


component = make()
