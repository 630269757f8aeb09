from dss.index.schemas import scrub


def test_closed_objects_lose_unknown_properties_recursively():
    schema = {"additionalProperties": False, "properties": {
        "a": {}, "nested": {"additionalProperties": False, "properties": {"keep": {}}},
        "items": {"type": "array", "items": {"additionalProperties": False, "properties": {"x": {}}}}}}
    content = {"a": 1, "drop": 2, "nested": {"keep": 3, "drop": 4}, "items": [{"x": 1, "y": 2}]}
    assert scrub(content, schema) == {"a": 1, "nested": {"keep": 3}, "items": [{"x": 1}]}


def test_open_objects_keep_everything():
    assert scrub({"a": 1, "b": {"c": 2}}, {"properties": {"a": {}}}) == {"a": 1, "b": {"c": 2}}
    assert scrub([1, 2], {}) == [1, 2]
