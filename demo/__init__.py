"""The Gradio face of iDream: layout, callbacks, plotly figures and the UMAP projection cache."""
