from dss.index.documents import (SchemaInfo, group_files, index_document, metadata_document, normalize_name,
                                 shape_descriptor)


def test_name_normalization():
    assert normalize_name("donor_organism_0.json") == "donor_organism_json"
    assert normalize_name("donor_organism_12.json") == "donor_organism_json"
    assert normalize_name("links.json") == "links_json"
    assert normalize_name("cell_suspension.json") == "cell_suspension_json"
    assert normalize_name("a.b.txt") == "a_b_txt"
    assert group_files([("donor_organism_0.json", 1), ("donor_organism_1.json", 2)]) == {"donor_organism_json": [1, 2]}


def test_schema_info():
    url = "https://schema.humancellatlas.org/type/biomaterial/5.1.0/donor_organism"
    assert SchemaInfo.of({"describedBy": url}) == SchemaInfo("donor_organism", 5)
    assert SchemaInfo.of({"describedBy": url + ".json"}) == SchemaInfo("donor_organism", 5)
    assert SchemaInfo.of({"core": {"type": "cell", "schema_version": "6.2.1"}}) == SchemaInfo("cell", 6)
    assert SchemaInfo.of({"no": "schema"}) is None and SchemaInfo.of([1]) is None
    assert SchemaInfo.of({"describedBy": "https://x/1.0.0/2.0.0/t"}) is None


def test_shape_descriptor():
    def described(t, major):
        return {"describedBy": f"https://s/type/x/{major}.0.0/{t}"}
    assert shape_descriptor({}) is None
    assert shape_descriptor({"donor_organism_json": [described("donor_organism", 5)]}) == "v5"
    mixed = {"donor_organism_json": [described("donor_organism", 5)], "cell_json": [described("cell_suspension", 6)]}
    assert shape_descriptor(mixed) == "v.cell.cell_suspension.6.donor_organism.5"


def test_documents():
    manifest = {"version": "v", "files": [{"name": "a"}]}
    doc = index_document("u", manifest, {"a_json": [{"x": 1}]})
    assert doc["manifest"] is manifest and doc["shape_descriptor"] == "None" and doc["state"] == "new"
    create = metadata_document("CREATE", "u", "v", manifest=manifest, files={"a_json": [{}]})
    assert create["bundle_info"] == {"uuid": "u", "version": "v"} and create["files"] == {"a_json": [{}]}
    tomb = metadata_document("TOMBSTONE", "u", "v", tombstone={"email": "e", "reason": "r", "admin_deleted": True})
    assert tomb["reason"] == "r" and "manifest" not in tomb
    assert metadata_document("DELETE", "u", "v") == {"event_type": "DELETE", "bundle_info": {"uuid": "u", "version": "v"}}
