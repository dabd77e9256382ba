/**
 * How clients name event types in queries (the query API, the live view): one type exactly (`order.paid`, the
 * event schema's rule), or every type starting with a prefix (`order.*`). A lone `*` is every type.
 */
export type TypePattern = { readonly exact: string } | { readonly prefix: string };

const EXACT = /^[A-Za-z0-9_.:-]{1,128}$/;
const PREFIX = /^([A-Za-z0-9_.:-]{0,127})\*$/;

/** The pattern `text` spells; null for every type (`*`); undefined when it is neither a type nor a prefix. */
export function parseTypePattern(text: string): TypePattern | null | undefined {
  const prefix = PREFIX.exec(text);
  if (prefix) return prefix[1] === '' ? null : { prefix: prefix[1]! };
  return EXACT.test(text) ? { exact: text } : undefined;
}
