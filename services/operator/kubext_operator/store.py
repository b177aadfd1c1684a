"""The watch cache: owner and child views keyed by kind, namespace and name, fed by kopf."""

from __future__ import annotations

import collections

from kubext_operator import views

Key = tuple[str, str, str]
"""(kind, namespace, name)"""


class Store:
    def __init__(self) -> None:
        self._owners: dict[Key, views.OwnerView] = {}
        self._children: dict[Key, views.ChildView] = {}
        self._by_owner: dict[Key, set[Key]] = collections.defaultdict(set)

    def __len__(self) -> int:
        return len(self._owners) + len(self._children)

    def upsert_owner(self, view: views.OwnerView) -> None:
        self._owners[view.key] = view

    def delete_owner(self, key: Key) -> views.OwnerView | None:
        return self._owners.pop(key, None)

    def owner(self, key: Key) -> views.OwnerView | None:
        return self._owners.get(key)

    def owner_keys(self) -> list[Key]:
        return list(self._owners)

    @staticmethod
    def owner_key_of(child: views.ChildView) -> Key | None:
        if not child.owner_kind or not child.owner_name:
            return None
        return (child.owner_kind, child.namespace, child.owner_name)

    def upsert_child(self, view: views.ChildView) -> Key | None:
        """Store ``view``; returns its owner's key (the object to reconcile)."""
        key = (view.kind, view.namespace, view.name)
        old = self._children.get(key)
        if old is not None and (owner := self.owner_key_of(old)) is not None:
            self._by_owner[owner].discard(key)
        self._children[key] = view
        owner = self.owner_key_of(view)
        if owner is not None:
            self._by_owner[owner].add(key)
        return owner

    def delete_child(self, key: Key) -> Key | None:
        view = self._children.pop(key, None)
        if view is None:
            return None
        owner = self.owner_key_of(view)
        if owner is not None:
            siblings = self._by_owner.get(owner)
            if siblings is not None:
                siblings.discard(key)
                if not siblings:
                    del self._by_owner[owner]
        return owner

    def child_names(self, kind: str, namespace: str | None) -> set[tuple[str, str]]:
        """(namespace, name) of every cached child of ``kind`` (in ``namespace``, if given)."""
        return {
            (ns, name)
            for (k, ns, name) in self._children
            if k == kind and (namespace is None or ns == namespace)
        }

    def child(self, key: Key) -> views.ChildView | None:
        return self._children.get(key)

    def children_of(self, owner: Key) -> list[views.ChildView]:
        return [
            self._children[k] for k in sorted(self._by_owner.get(owner, ())) if k in self._children
        ]
