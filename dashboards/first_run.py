"""What an empty store shows: how to get the first numbers in."""

from __future__ import annotations

import streamlit as st

CAMPAIGN_SPEC = """\
name: first-look
devices: {tags: [lab]}
models: [mlp_digits, small_cnn_96]
runtimes: [onnxruntime, openvino]
precisions: [fp32]
batch_sizes: [1, 8]
"""


def show() -> None:
    st.title("Welcome to edgebench")
    st.info(
        "This store is empty: no device has registered and no campaign was submitted yet. "
        "Three steps fill it (or run `edgebench quickstart` to do all of them on this machine)."
    )
    st.markdown("**1. Start the controller** (store, broker, scheduler):")
    st.code("edgebench server", language="bash")
    st.markdown("**2. Register a device**: on each board, start an agent with a unique name:")
    st.code("edgebench agent start --name pi4-lab-1 --tags lab", language="bash")
    st.markdown("**3. Submit a campaign**: write a spec and submit it:")
    st.code(CAMPAIGN_SPEC, language="yaml")
    st.code("edgebench campaign submit spec.yaml --wait", language="bash")
    st.caption("This page refreshes its data on every visit: reload once the first trial is done.")


def no_results() -> None:
    """Devices or campaigns exist, but no trial has a result yet."""
    st.info(
        "No measured results yet. Submit a campaign with `edgebench campaign submit spec.yaml` "
        "(`edgebench campaign plan spec.yaml` shows what would run), and watch it on the "
        "Campaigns page."
    )
