/** The account whose namespace `/<account>/...` holds a topic or filter; undefined outside every namespace. */
export function ownerOf(topic: string): string | undefined {
  if (topic.charCodeAt(0) !== 47) return undefined
  const end = topic.indexOf('/', 1)
  const owner = end < 0 ? topic.slice(1) : topic.slice(1, end)
  return owner.length === 0 || owner === '+' || owner === '#' ? undefined : owner
}
