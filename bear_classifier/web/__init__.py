"""The request path of the public page, in front of and around Gradio: `limits` (exact routes, body caps, requests
open and queued per client), `clients` (who a request is from, and each one's shares), `uploads` (the upload folder's
lifetime and shares), `components` (the page's upload and probability components), `feedback` (the "Wrong?" flags kept
for review), `machine` (the CPUs and memory the container allows) and `zerogpu` (ZeroGPU's `spaces`, imported there
only). It never imports training, shipping or batch code."""
