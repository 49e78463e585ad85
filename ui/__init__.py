"""Streamlit-only helpers the pages share; the math stays in gradcam_core."""
