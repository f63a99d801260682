"""The answer pipeline: from a question and its retrieved passages to a checked, cited answer.

- ``answer``: the pipeline itself (search, the gates, the prompt, the stream, verification, the quotes);
- ``evidence``: the sentences of the passages that bear on the question, scored and selected;
- ``prompting``: the prompt of each backend style, citations, the context given with a question;
- ``refusal``: the gates that decline before any model (no relevant passage, names the evidence lacks);
- ``verify``: each written sentence checked against the passage it cites;
- ``chat``: a conversation's follow-ups condensed into questions the pipeline can search with.
"""
