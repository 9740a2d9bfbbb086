"""Every dataset module declares what the converter and the data loader look up, instead of names."""

import inspect

import pytest

from tfmetric import datasets


@pytest.mark.parametrize("name", datasets.DATASET_NAMES)
def test_each_module_declares_the_contract(name):
    module = datasets.get_dataset(name)
    assert module.NAME == name
    assert set(module.SPLITS) >= {module.TRAIN_SPLIT, module.QUERY_SPLIT} and module.INSTRUCTIONS
    assert isinstance(module.GENERATED, bool)
    # Generated sets render in the converter's workers: records without bytes, then one class's bytes.
    assert module.GENERATED == (hasattr(module, "list_images") and hasattr(module, "generate_class"))
    assert module.GENERATED == (getattr(module, "GENERATOR_VERSION", None) is not None)
    parameters = inspect.signature(module.load).parameters
    assert all(option in parameters for option in module.LOAD_OPTIONS)


def test_which_modules_are_generated_or_take_class_lists():
    modules = [datasets.get_dataset(n) for n in datasets.DATASET_NAMES]
    assert [m.NAME for m in modules if m.GENERATED] == ["synthetic", "digits"]
    assert {m.NAME: m.LOAD_OPTIONS for m in modules if m.LOAD_OPTIONS} == {
        "imagefolder": ("train_classes", "test_classes")
    }
