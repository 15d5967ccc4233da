"""The judge model resource: the generator itself by default, or another model (a larger one on a GPU host)."""

import dagster as dg

from lc_assets.defs.generation.resources import GeneratorResource


class JudgeModelResource(GeneratorResource):
    """The model that judges accepted QA pairs (`judged_qa_pairs`).

    same_as_generator  true (default): use the `generator` resource's backend and model; false: this resource's
                       own fields (backend, gguf_path, base_url, model, ...), as for the generator
    """

    same_as_generator: bool = True

    def chosen(self, generator: GeneratorResource) -> GeneratorResource:
        """The resource whose backend judges: the generator, or this one."""
        return generator if self.same_as_generator else self


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"judge_model": JudgeModelResource()})
