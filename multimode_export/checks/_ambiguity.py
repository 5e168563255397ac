"""Exports whose meaning depends on who reads them: refused before loading.

TensorFlow's loaders pick a MetaGraphDef by tag *set*: of two MetaGraphDefs
whose tags are equal as sets (`serve` and `serve, serve`), a loader takes
the first, while a scan that compared tag lists would judge the other. A
signature naming a tensor its graph lacks is resolved by whoever runs it
(an error, or with a colliding name, something else). The safety scan
refuses each, with the reason:

- a tag list holding a tag twice;
- two MetaGraphDefs whose tag sets are equal (both are refused);
- a signature input or output naming a node the graph does not have.
"""

import collections
from typing import Container, Dict, List, Tuple

from multimode_export.graph import _graph_def

Problem = Tuple[str, str]  # (where, why)


def tag_problems(meta_graphs) -> Dict[int, List[Problem]]:
  """Duplicate tags and equal tag sets: MetaGraphDef index -> problems."""
  problems: Dict[int, List[Problem]] = collections.defaultdict(list)
  by_set: Dict[frozenset, List[int]] = collections.defaultdict(list)
  for index, meta_graph_def in enumerate(meta_graphs):
    tags = list(meta_graph_def.meta_info_def.tags)
    doubled = sorted({t for t in tags if tags.count(t) > 1})
    if doubled:
      problems[index].append((
          f'MetaGraphDef #{index} tags {tags}',
          f'the tag list holds {", ".join(map(repr, doubled))} more than '
          'once; TensorFlow matches tag sets, so this is the set '
          f'{sorted(set(tags))}'))
    by_set[frozenset(tags)].append(index)
  for tag_set, indices in by_set.items():
    if len(indices) < 2:
      continue
    for index in indices:
      others = ', '.join(f'#{i}' for i in indices if i != index)
      problems[index].append((
          f'MetaGraphDef #{index}',
          f'its tag set {sorted(tag_set)} is also the tag set of '
          f'MetaGraphDef {others}: a loader takes the first of them, so '
          'what is verified need not be what is served'))
  return problems


def _named_nodes(info) -> List[str]:
  """The node names a signature's TensorInfo refers to (any encoding)."""
  encoding = info.WhichOneof('encoding')
  if encoding == 'name':
    return [info.name]
  if encoding == 'coo_sparse':
    sparse = info.coo_sparse
    return [sparse.values_tensor_name, sparse.indices_tensor_name,
            sparse.dense_shape_tensor_name]
  if encoding == 'composite_tensor':
    return [n for c in info.composite_tensor.components
            for n in _named_nodes(c)]
  return []


def signature_problems(meta_graph_def, nodes: Container[str]
                      ) -> List[Problem]:
  """Signature tensors whose node `nodes` (the GraphDef's) does not have."""
  problems = []
  for key in sorted(meta_graph_def.signature_def):
    signature = meta_graph_def.signature_def[key]
    for kind, infos in (('input', signature.inputs),
                        ('output', signature.outputs)):
      for name in sorted(infos):
        missing = [t for t in _named_nodes(infos[name])
                   if _graph_def.node_name(t) not in nodes]
        if missing:
          problems.append((
              f'signature {key!r} {kind} {name!r}',
              f'names {missing[0]!r}, which the graph does not have'))
  return problems
