"""Found: a gradio_client Client shared by threads loses about one answer in 3000 to a client-side race (gradio_client 2.7.2), so load tests use a Client per caller; commit ac2845a (README, "Call the API").

Why the load tests give each caller thread its own `gradio_client.Client` (tests.support.appserver.CallerClients).

A Client shared by many threads loses about one answer in a few thousand (gradio_client 2.7.2): when
a submission crosses the server closing the session's event stream, the client cancels it and
`predict` raises an empty `CancelledError`, though the server answered. This reproduces it against
a trivial batched app, so the model plays no part:

    python -m research.client_race --requests 6000       # shared Client, then one Client per thread
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import gradio as gr
from gradio_client import Client

from tests.support.appserver import CallerClients, free_port


def echo(texts: list[str]) -> tuple[list[str]]:
    time.sleep(0.01)
    return (texts,)


def lost_answers(client: Client | CallerClients, requests: int, callers: int) -> list[str]:
    def one(i: int) -> str | None:
        try:
            answer = client.predict(str(i), api_name="/predict")
            return None if answer == str(i) else f"{i}: wrong answer {answer!r}"
        except Exception as e:
            return f"{i}: {type(e).__name__} {e!r}"

    with ThreadPoolExecutor(max_workers=callers) as pool:
        return [problem for problem in pool.map(one, range(requests)) if problem]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--callers", type=int, default=16)
    args = parser.parse_args()
    demo = gr.Interface(echo, "text", "text", batch=True, max_batch_size=16, api_name="predict")
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        for name, client in [
            ("one shared Client", Client(url, verbose=False)),
            ("a Client per thread", CallerClients(url)),
        ]:
            start = time.perf_counter()
            lost = lost_answers(client, args.requests, args.callers)
            print(
                f"{name}: {len(lost)} of {args.requests} answers lost ({time.perf_counter() - start:.0f} s) {lost[:3]}"
            )
    finally:
        demo.close()


if __name__ == "__main__":
    main()
