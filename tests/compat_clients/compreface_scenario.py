"""Drive a faceid server through compreface-sdk 0.6 (run with the Python of .venv-compreface, which
has the SDK and urllib3<2; no faceid, no pytest here). Prints one JSON object: every answer the
SDK returned, for tests/test_compat_clients.py to judge.

usage: compreface_scenario.py URL PORT API_KEY PEOPLE_DIR GROUP_PHOTO
PEOPLE_DIR has one folder per person (named after them) or one photo per person (named after them).
"""

import json
import os
import sys

from compreface import CompreFace


def people(folder):
    out = []
    for entry in sorted(os.listdir(folder)):
        path = os.path.join(folder, entry)
        if os.path.isdir(path):
            out += [(entry, os.path.join(path, f)) for f in sorted(os.listdir(path))]
        else:
            out.append((os.path.splitext(entry)[0].lower(), path))
    return out


def main():
    url, port, key, folder, group = sys.argv[1:6]
    options = {
        "limit": 0,
        "det_prob_threshold": 0.8,
        "prediction_count": 1,
        "face_plugins": "landmarks",
        "status": "true",
    }
    service = CompreFace(url, port, options).init_face_recognition(key)
    faces, subjects = service.get_face_collection(), service.get_subjects()
    log = {"start": subjects.delete_all()}
    log["added"] = [faces.add(image_path=path, subject=name) for name, path in people(folder)]
    log["subjects"] = subjects.list()
    log["faces"] = faces.list()
    log["recognised"] = service.recognize(image_path=group)
    first = log["added"][0]
    log["verify"] = faces.verify(image_path=group, image_id=first["image_id"])
    log["renamed"] = subjects.update(first["subject"], first["subject"] + " renamed")
    log["after_rename"] = subjects.list()
    log["recognised_after_rename"] = service.recognize(image_path=group)
    log["deleted_face"] = faces.delete(first["image_id"])
    second = log["added"][1]["subject"]
    log["deleted_examples"] = faces.delete_all(second)
    log["deleted_subject"] = subjects.delete(log["added"][-1]["subject"])
    log["before_delete_all"] = subjects.list()
    log["delete_all"] = subjects.delete_all()
    log["final"] = subjects.list()
    print(json.dumps(log))


if __name__ == "__main__":
    main()
