// What the views share.

/** Wrap a render function so it runs only when its data differs from the last call's: polling
 * then costs nothing on screen, and forms, selections and scroll positions survive it. */
export function whenChanged(render) {
  let last;
  return (data) => {
    const key = JSON.stringify(data);
    if (key === last) return;
    last = key;
    render(data);
  };
}
