"""RULER prompt templates: model wrappers, task templates, answer prefixes (NVIDIA/RULER @ c3f5e3b).

A RULER prompt is ``MODEL_TEMPLATES[model].format(task_template=TASK_TEMPLATE) + ANSWER_PREFIX``,
formatted afterwards with the task's fields. The answer prefix comes *after* the model wrapper:
it pre-fills the assistant turn, and the model is sent ``input + answer_prefix``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Fixed model wrappers (RULER's ``scripts/data/template.py``); RULER never uses ``apply_chat_template``.
MODEL_TEMPLATES: dict[str, str] = {
    "base": "{task_template}",
    "meta-chat": "[INST] {task_template} [/INST]",
    "vicuna-chat": (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: {task_template} ASSISTANT:"
    ),
    "lwm-chat": "You are a helpful assistant. USER: {task_template} ASSISTANT: ",
    "command-r-chat": (
        "<BOS_TOKEN><|START_OF_TURN_TOKEN|><|USER_TOKEN|>{task_template}<|END_OF_TURN_TOKEN|>"
        "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
    ),
    "chatglm-chat": "[gMASK]sop<|user|> \n {task_template}<|assistant|> \n ",
    "RWKV": (
        "User: hi\n\nAssistant: Hi. I am your assistant and I will provide expert full response in full details. "
        "Please feel free to ask any question and I will always answer it\n\nUser: {task_template}\n\nAssistant:"
    ),
    "Phi3": "<|user|>\n{task_template}<|end|>\n<|assistant|>\n",
    "meta-llama3": (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{task_template}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "jamba": "<|startoftext|><|bom|><|system|> <|eom|><|bom|><|user|> {task_template}<|eom|><|bom|><|assistant|>",
    "nemotron5-instruct": "<SPECIAL_10>System\n\n<SPECIAL_11>User\n{task_template}\n<SPECIAL_11>Assistant\n",
}


@dataclass(frozen=True)
class TaskTemplate:
    """One RULER generator family's task template and answer prefix (exact strings)."""

    template: str
    answer_prefix: str

    @property
    def split_marker(self) -> str:
        """RULER splits ``input`` / ``answer_prefix`` at the last occurrence of the raw prefix's first 10 chars."""
        return self.answer_prefix[:10]


TASK_TEMPLATES: dict[str, TaskTemplate] = {
    "niah": TaskTemplate(
        template=(
            "Some special magic {type_needle_v} are hidden within the following text. Make sure to memorize it. "
            "I will quiz you about the {type_needle_v} afterwards.\n{context}\n"
            "What are all the special magic {type_needle_v} for {query} mentioned in the provided text?"
        ),
        answer_prefix=" The special magic {type_needle_v} for {query} mentioned in the provided text are",
    ),
    "variable_tracking": TaskTemplate(
        template=(
            "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
            "Question: Find all variables that are assigned the value {query} in the text above."
        ),
        answer_prefix=(
            " Answer: According to the chain(s) of variable assignment in the text above, "
            "{num_v} variables are assigned the value {query}, they are: "
        ),
    ),
    "common_words_extraction": TaskTemplate(
        template=(
            "Below is a numbered list of words. In these words, some appear more often than others. "
            "Memorize the ones that appear most often.\n{context}\n"
            "Question: What are the 10 most common words in the above list?"
        ),
        answer_prefix=" Answer: The top 10 words that appear most often in the list are:",
    ),
    "freq_words_extraction": TaskTemplate(
        template=(
            "Read the following coded text and track the frequency of each coded word. "
            "Find the three most frequently appeared coded words. {context}\n"
            "Question: Do not provide any explanation. Please ignore the dots '....'. "
            "What are the three most frequently appeared words in the above coded text?"
        ),
        answer_prefix=" Answer: According to the coded text above, the three most frequently appeared words are:",
    ),
    "qa": TaskTemplate(
        template=(
            "Answer the question based on the given documents. Only give me the answer and do not output any "
            "other words.\n\nThe following are given documents.\n\n{context}\n\n"
            "Answer the question based on the given documents. Only give me the answer and do not output any "
            "other words.\n\nQuestion: {query}"
        ),
        answer_prefix=" Answer:",
    ),
}


def full_template(family: str, model_template_type: str) -> str:
    """The unformatted prompt template: model wrapper around the task template, then the answer prefix."""
    try:
        wrapper = MODEL_TEMPLATES[model_template_type]
    except KeyError:
        raise ValueError(
            f"unknown model_template_type {model_template_type!r}; known: {sorted(MODEL_TEMPLATES)}"
        ) from None
    task = TASK_TEMPLATES[family]
    return wrapper.format(task_template=task.template) + task.answer_prefix


def niah_singular(template: str) -> str:
    """RULER's rewrite for single-answer NIAH questions, applied to the *whole* template string.

    It is a blind string replace, so it also touches the model wrapper (vicuna's "answers" -> "answer").
    """
    return template.replace("Some", "A").replace("are all", "is").replace("are", "is").replace("answers", "answer")


def split_answer_prefix(family: str, text: str) -> tuple[str, str]:
    """Split a formatted prompt into (input, answer_prefix) the way RULER does (rfind of the marker)."""
    cut = text.rfind(TASK_TEMPLATES[family].split_marker)
    if cut < 0:
        raise ValueError(f"answer prefix marker for {family!r} not found in the prompt")
    return text[:cut], text[cut:]
