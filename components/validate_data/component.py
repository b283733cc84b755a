"""validate_data: read the raw dataset, run the Great Expectations gate, write canonical Parquet.

A failing gate stops the run here: the data-docs HTML and the report folder are written first, then the step
fails with the message naming the suite, expectation, column and rows.
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Output

from .. import DEFAULT_IMAGE  # the package constant (a relative import: no library is loaded here)


def validate_data(
    data_uri: str,
    dataset: Output[Dataset],
    report: Output[Artifact],
    data_docs: Output[HTML],
    policy: str = "strict",
    data_format: str = "auto",
    data_overrides: list = [],  # noqa: B006 (kfp parameters need literal defaults)
):
    import shutil
    from pathlib import Path

    from hllm.config import DataConfig, load_config
    from hllm.data.readers import read_raw
    from hllm.data.validation import require_pass, validate_tables

    if not data_docs.uri.endswith(".html"):  # kfp names the file after the output: make it open as a web page
        data_docs.uri += ".html"
    config = load_config(DataConfig, None, [str(o) for o in data_overrides])
    result = validate_tables(read_raw(data_uri, data_format), config, policy=policy, report_dir=report.path)
    docs = Path(report.path) / "data_docs" / "index.html"
    if docs.is_file():
        shutil.copyfile(docs, data_docs.path)
    report.metadata.update({"passed": result.passed, "policy": policy, "counts": result.counts})
    accepted = require_pass(result)  # raises ValidationFailed: the run stops at this step
    accepted.save(dataset.path)
    dataset.metadata.update(
        {
            "fingerprint": accepted.fingerprint(),
            "users": accepted.num_users,
            "items": accepted.num_items,
            "interactions": len(accepted.interactions),
            "source": data_uri,
        }
    )


def make(image: str = DEFAULT_IMAGE):
    return dsl.component(validate_data, base_image=image)


component = make()
